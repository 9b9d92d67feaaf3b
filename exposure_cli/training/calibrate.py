"""Fit the stops-of-correction head of a weights file on the *train* bracket stacks.

``ev_correction`` is estimated from the map (:mod:`exposure_cli.correction`). A map that is right in
direction but too timid in size gives estimates that are too small in proportion, so each weights file
gets two numbers, ``stops ← gain · stops + offset``, fitted here by least absolute deviation against the
known exposure offsets of real bracket frames within ±3 EV of their stack's best frame — on the train
stacks only (val and lockbox stay for measuring it) — and written into the weights' ``card.json`` (the
card is not part of the weights' sha256; the safetensors file is untouched).

Run: ``python -m exposure_cli.training.calibrate --weights weights/ --brackets corpus/brackets``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Frames within this many stops of the best frame are used (the range the issue's bar is written for).
WINDOW = 3.0


def fit_lad(estimates: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """``(gain, offset)`` minimising mean |gain·estimate + offset − target| (a coarse-to-fine grid)."""
    x, y = np.asarray(estimates, float), np.asarray(targets, float)
    best = (1.0, 0.0)
    best_err = float(np.mean(np.abs(x - y)))
    centre, span = (1.0, 0.0), (1.5, 1.5)
    for _ in range(4):
        gains = np.linspace(max(0.1, centre[0] - span[0]), centre[0] + span[0], 61)
        offsets = np.linspace(centre[1] - span[1], centre[1] + span[1], 61)
        err = np.abs(gains[:, None, None] * x[None, None, :] + offsets[None, :, None] - y[None, None, :]).mean(-1)
        i, j = np.unravel_index(int(err.argmin()), err.shape)
        if err[i, j] < best_err:
            best, best_err = (float(gains[i]), float(offsets[j])), float(err[i, j])
        centre, span = best, (span[0] / 6, span[1] / 6)
    return best


def collect(weights: str | Path, brackets: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated estimates and their targets (−relative EV) for the frames of `split` within WINDOW."""
    from ..analyzers import create_analyzer
    from ..color import grey
    from ..correction import ev_correction
    from ..data.brackets import load_stacks

    analyzer = create_analyzer("eat", weights=str(weights), device="cpu")
    xs, ys = [], []
    try:
        for stack in load_stacks(Path(brackets), split):
            keep = [k for k, rel in enumerate(stack.relative_ev_to_best) if abs(rel) <= WINDOW]
            images = [stack.frame(k).astype(np.float32) / 255.0 for k in keep]
            for k, img, pred in zip(keep, images, analyzer.analyze_batch(images)):
                xs.append(ev_correction(grey(img), pred))
                ys.append(-float(stack.relative_ev_to_best[k]))
    finally:
        analyzer.close()
    return np.array(xs), np.array(ys)


def calibrate(weights: str | Path, brackets: str | Path) -> dict[str, Any]:
    """Fit on the train stacks and write the result into the card next to `weights`."""
    from ..atomic import atomic_write_bytes
    from ..weights import resolve_weights

    path = resolve_weights(weights)
    x, y = collect(path, brackets, "train")
    if len(x) < 8:
        raise ValueError(f"only {len(x)} train frames within ±{WINDOW} EV: too few to fit")
    gain, offset = fit_lad(x, y)
    entry = {
        "gain": round(gain, 4), "offset": round(offset, 4), "fitted_on": "train bracket stacks",
        "frames": int(len(x)), "window_ev": WINDOW,
        "train_error_before": round(float(np.mean(np.abs(x - y))), 4),
        "train_error_after": round(float(np.mean(np.abs(gain * x + offset - y))), 4),
    }
    card_path = path.parent / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["ev_correction"] = entry
    atomic_write_bytes(card_path, (json.dumps(card, indent=1) + "\n").encode("utf-8"))
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="weights file or folder (its card.json is updated)")
    parser.add_argument("--brackets", required=True, type=Path, help="bracket folder (corpus/brackets)")
    args = parser.parse_args(argv)
    print(json.dumps(calibrate(args.weights, args.brackets), indent=1))


if __name__ == "__main__":
    main()
