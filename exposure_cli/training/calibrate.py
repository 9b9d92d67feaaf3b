"""Fit the stops-of-correction head of a weights file on the *train* bracket stacks.

``ev_correction`` is estimated from the map (:mod:`exposure_cli.correction`). A map that is right in
direction but too timid in size gives estimates that are too small in proportion, so each weights file
gets a small head, ``stops ← gain · s + offset [+ Σ weight_i · input_i]``, fitted here by least absolute
deviation (median regression, an exact linear program) against the known exposure offsets of real bracket
frames within ±3 EV of their stack's best frame — on the train stacks only (val and lockbox stay for
measuring it) — and written into the weights' ``card.json`` (the card is not part of the weights' sha256;
the safetensors file is untouched). ``--inputs`` chooses the head's extra inputs
(:data:`exposure_cli.correction.HEAD_INPUTS`); none gives the two-number head.

Run: ``python -m exposure_cli.training.calibrate --weights weights/ --brackets corpus/brackets
[--inputs clipped,crushed]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Frames within this many stops of the best frame are used (the range the issue's bar is written for).
WINDOW = 3.0


def fit_lad(estimates: np.ndarray, targets: np.ndarray, inputs: np.ndarray | None = None) -> tuple[float, float] | tuple[float, float, np.ndarray]:
    """Least-absolute-deviation fit of ``gain · estimate + offset [+ inputs @ weights]`` to `targets`.

    Returns ``(gain, offset)``, or ``(gain, offset, weights)`` when `inputs` (N×K) is given. Solved exactly
    as a linear program (scikit-learn's median regression, no penalty)."""
    from sklearn.linear_model import QuantileRegressor

    x = np.asarray(estimates, float).reshape(-1, 1)
    design = x if inputs is None else np.hstack([x, np.asarray(inputs, float).reshape(len(x), -1)])
    model = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(design, np.asarray(targets, float))
    gain, offset = float(model.coef_[0]), float(model.intercept_)
    if inputs is None:
        return gain, offset
    return gain, offset, np.asarray(model.coef_[1:], float)


def collect(weights: str | Path, brackets: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The map's stops, the head's extra inputs (N×len(HEAD_INPUTS), in that order), the targets
    (−relative EV) and each frame's stack id, for the frames of `split` within WINDOW of their best frame."""
    from ..analyzers import create_analyzer
    from ..color import grey
    from ..correction import HEAD_INPUTS, head_inputs, map_stops, sample_step
    from ..data.brackets import load_stacks

    analyzer = create_analyzer("eat", weights=str(weights), device="cpu")
    stops, extra, ys, ids = [], [], [], []
    try:
        for stack in load_stacks(Path(brackets), split):
            keep = [k for k, rel in enumerate(stack.relative_ev_to_best) if abs(rel) <= WINDOW]
            images = [stack.frame(k).astype(np.float32) / 255.0 for k in keep]
            for k, img, pred in zip(keep, images, analyzer.analyze_batch(images)):
                g, r = grey(img), np.asarray(pred, np.float32)
                step = sample_step(g.size)  # the same even subsample ev_correction reads
                g, r = g[::step, ::step].ravel(), r[::step, ::step].ravel()
                stops.append(map_stops(g, r))
                found = head_inputs(g, r)
                extra.append([found[name] for name in HEAD_INPUTS])
                ys.append(-float(stack.relative_ev_to_best[k]))
                ids.append(stack.id)
    finally:
        analyzer.close()
    return np.array(stops), np.array(extra).reshape(len(stops), len(HEAD_INPUTS)), np.array(ys), np.array(ids)


def head_error(stops: np.ndarray, extra: np.ndarray, targets: np.ndarray, entry: dict[str, Any]) -> float:
    """Mean |head − target| of a card entry on collected frames (the evaluation's EV error, clamped alike)."""
    from ..correction import HEAD_INPUTS, LIMIT, EVCalibration

    head = EVCalibration.from_card({"ev_correction": entry})
    value = head.combine(stops, {name: extra[:, i] for i, name in enumerate(HEAD_INPUTS)})
    return float(np.mean(np.abs(np.clip(value, -LIMIT, LIMIT) - targets)))


def fit_head(stops: np.ndarray, extra: np.ndarray, targets: np.ndarray, inputs: Sequence[str] = ()) -> dict[str, Any]:
    """The card entry of a head with extra `inputs`, fitted on the given (train) frames."""
    from ..correction import HEAD_INPUTS

    unknown = [name for name in inputs if name not in HEAD_INPUTS]
    if unknown:
        raise ValueError(f"unknown head input(s) {unknown}; known: {list(HEAD_INPUTS)}")
    if len(stops) < 8 + len(inputs):
        raise ValueError(f"only {len(stops)} train frames within ±{WINDOW} EV: too few to fit")
    if inputs:
        cols = extra[:, [HEAD_INPUTS.index(name) for name in inputs]]
        gain, offset, w = fit_lad(stops, targets, cols)
        weights = {name: round(float(v), 4) for name, v in zip(inputs, w)}
    else:
        gain, offset = fit_lad(stops, targets)
        weights = {}
    entry: dict[str, Any] = {"gain": round(gain, 4), "offset": round(offset, 4)}
    if weights:
        entry["weights"] = weights
    entry.update({"fitted_on": "train bracket stacks", "frames": int(len(stops)), "window_ev": WINDOW,
                  "train_error_before": round(float(np.mean(np.abs(stops - targets))), 4)})
    entry["train_error_after"] = round(head_error(stops, extra, targets, entry), 4)
    return entry


def calibrate(weights: str | Path, brackets: str | Path, inputs: Sequence[str] = ()) -> dict[str, Any]:
    """Fit on the train stacks and write the result into the card next to `weights`."""
    from ..atomic import atomic_write_bytes
    from ..weights import resolve_weights

    path = resolve_weights(weights)
    stops, extra, targets, _ = collect(path, brackets, "train")
    entry = fit_head(stops, extra, targets, inputs=inputs)
    card_path = path.parent / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["ev_correction"] = entry
    atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="weights file or folder (its card.json is updated)")
    parser.add_argument("--brackets", required=True, type=Path, help="bracket folder (corpus/brackets)")
    parser.add_argument("--inputs", default="", help="comma-separated extra head inputs (clipped, crushed, "
                        "mean_r, level); none: the two-number head")
    args = parser.parse_args(argv)
    inputs = [name.strip() for name in args.inputs.split(",") if name.strip()]
    print(json.dumps(calibrate(args.weights, args.brackets, inputs), indent=1))


if __name__ == "__main__":
    main()
