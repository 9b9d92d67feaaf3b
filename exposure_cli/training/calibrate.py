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
[--inputs clipped,crushed] [--fit-set known]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Frames within this many stops of the best frame are used (the range the issue's bar is written for).
WINDOW = 3.0


def fit_lad(estimates: np.ndarray, targets: np.ndarray, inputs: np.ndarray | None = None,
            sample_weight: np.ndarray | None = None) -> tuple[float, float] | tuple[float, float, np.ndarray]:
    """Least-absolute-deviation fit of ``gain · estimate + offset [+ inputs @ weights]`` to `targets`
    (each frame's |error| weighted by `sample_weight` when given).

    Returns ``(gain, offset)``, or ``(gain, offset, weights)`` when `inputs` (N×K) is given. Solved exactly
    as a linear program (scikit-learn's median regression, no penalty)."""
    from sklearn.linear_model import QuantileRegressor

    x = np.asarray(estimates, float).reshape(-1, 1)
    design = x if inputs is None else np.hstack([x, np.asarray(inputs, float).reshape(len(x), -1)])
    model = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(design, np.asarray(targets, float),
                                                                          sample_weight=sample_weight)
    gain, offset = float(model.coef_[0]), float(model.intercept_)
    if inputs is None:
        return gain, offset
    return gain, offset, np.asarray(model.coef_[1:], float)


def collect(weights: str | Path, brackets: str | Path, split: str = "train"
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The map's stops, the head's extra inputs (N×len(HEAD_INPUTS), in that order), the targets
    (−relative EV), each frame's stack id and whether its offset is an exposure fact (EXIF, file name,
    ``list.txt``) rather than estimated from the frames, for the frames of `split` within WINDOW of their
    best frame."""
    from ..analyzers import create_analyzer
    from ..color import grey
    from ..correction import HEAD_INPUTS, SampleLevels, head_inputs, sample_step
    from ..data.brackets import load_stacks
    from ..stack_evaluation import KNOWN_EV_SOURCES

    analyzer = create_analyzer("eat", weights=str(weights), device="cpu")
    stops, extra, ys, ids, known = [], [], [], [], []
    try:
        for stack in load_stacks(Path(brackets), split):
            keep = [k for k, rel in enumerate(stack.relative_ev_to_best) if abs(rel) <= WINDOW]
            images = [stack.frame(k).astype(np.float32) / 255.0 for k in keep]
            for k, img, pred in zip(keep, images, analyzer.analyze_batch(images)):
                g, r = grey(img), np.asarray(pred, np.float32)
                step = sample_step(g.size)  # the same even subsample ev_correction reads
                g, r = g[::step, ::step].ravel(), r[::step, ::step].ravel()
                levels = SampleLevels(g, r)  # the sRGB decoding once for the stops and the inputs
                stops.append(levels.stops())
                found = head_inputs(g, r, levels)
                extra.append([found[name] for name in HEAD_INPUTS])
                ys.append(-float(stack.relative_ev_to_best[k]))
                ids.append(stack.id)
                known.append(stack.ev_source in KNOWN_EV_SOURCES)
    finally:
        analyzer.close()
    return (np.array(stops), np.array(extra).reshape(len(stops), len(HEAD_INPUTS)), np.array(ys), np.array(ids),
            np.array(known, dtype=bool))


def head_error(stops: np.ndarray, extra: np.ndarray, targets: np.ndarray, entry: dict[str, Any]) -> float:
    """Mean |head − target| of a card entry on collected frames (the evaluation's EV error, clamped alike)."""
    from ..correction import HEAD_INPUTS, LIMIT, EVCalibration

    head = EVCalibration.from_card({"ev_correction": entry})
    value = head.combine(stops, {name: extra[:, HEAD_INPUTS.index(name)] for name, _ in head.weights})
    return float(np.mean(np.abs(np.clip(value, -LIMIT, LIMIT) - targets)))


#: Which train frames a head is fitted on: every frame; only those whose offset is an exposure fact
#: (EXIF, file name, ``list.txt``); or every frame with both kinds weighted to equal total weight.
FIT_SETS = ("all", "known", "balanced")


def fit_head(stops: np.ndarray, extra: np.ndarray, targets: np.ndarray, inputs: Sequence[str] = (),
             known: np.ndarray | None = None, fit_set: str = "all") -> dict[str, Any]:
    """The card entry of a head with extra `inputs`, fitted on the given (train) frames — all of them, or
    per `fit_set` (:data:`FIT_SETS`) with `known` saying which frames' offsets are exposure facts."""
    from ..correction import HEAD_INPUTS

    unknown = [name for name in inputs if name not in HEAD_INPUTS]
    if unknown:
        raise ValueError(f"unknown head input(s) {unknown}; known: {list(HEAD_INPUTS)}")
    if fit_set not in FIT_SETS:
        raise ValueError(f"unknown fit set {fit_set!r}; known: {list(FIT_SETS)}")
    weight = None
    if fit_set != "all":
        if known is None:
            raise ValueError(f"fit set {fit_set!r} needs to know which frames' exposures are known")
        known = np.asarray(known, dtype=bool)
        if fit_set == "known":
            stops, extra, targets = stops[known], extra[known], targets[known]
        elif known.all() or not known.any():
            weight = None
        else:
            weight = np.where(known, 0.5 / known.sum(), 0.5 / (~known).sum()) * len(known)
    if len(stops) < 8 + len(inputs):
        raise ValueError(f"only {len(stops)} train frames within ±{WINDOW} EV ({fit_set}): too few to fit")
    if inputs:
        cols = extra[:, [HEAD_INPUTS.index(name) for name in inputs]]
        gain, offset, w = fit_lad(stops, targets, cols, sample_weight=weight)
        weights = {name: round(float(v), 4) for name, v in zip(inputs, w)}
    else:
        gain, offset = fit_lad(stops, targets, sample_weight=weight)
        weights = {}
    entry: dict[str, Any] = {"gain": round(gain, 4), "offset": round(offset, 4)}
    if weights:
        entry["weights"] = weights
    fitted_on = {"all": "train bracket stacks", "known": "train bracket stacks, known exposures only",
                 "balanced": "train bracket stacks, known and estimated exposures weighted equally"}[fit_set]
    entry.update({"fitted_on": fitted_on, "frames": int(len(stops)), "window_ev": WINDOW,
                  "train_error_before": round(float(np.mean(np.abs(stops - targets))), 4)})
    entry["train_error_after"] = round(head_error(stops, extra, targets, entry), 4)
    return entry


def calibrate(weights: str | Path, brackets: str | Path, inputs: Sequence[str] = (), fit_set: str = "all"
              ) -> dict[str, Any]:
    """Fit on the train stacks (the frames `fit_set` names) and write the result into the card next to
    `weights`."""
    from ..atomic import atomic_write_bytes
    from ..weights import resolve_weights

    path = resolve_weights(weights)
    stops, extra, targets, _, known = collect(path, brackets, "train")
    entry = fit_head(stops, extra, targets, inputs=inputs, known=known, fit_set=fit_set)
    card_path = path.parent / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["ev_correction"] = entry
    atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="weights file or folder (its card.json is updated)")
    parser.add_argument("--brackets", required=True, type=Path, help="bracket folder (corpus/brackets)")
    parser.add_argument("--inputs", default="", help="comma-separated extra head inputs (names in "
                        "exposure_cli.correction.HEAD_INPUTS); none: the two-number head")
    parser.add_argument("--fit-set", default="all", choices=FIT_SETS,
                        help="train frames to fit on: all, known exposures only, or both weighted equally")
    args = parser.parse_args(argv)
    inputs = [name.strip() for name in args.inputs.split(",") if name.strip()]
    print(json.dumps(calibrate(args.weights, args.brackets, inputs, args.fit_set), indent=1))


if __name__ == "__main__":
    main()
