"""Cross-validate forms of the stops-of-correction head on the train bracket stacks (docs/MODEL.md, stage 8).

    python tools/ev_head_cv.py --weights weights/ --brackets corpus/brackets

Runs the analyzer over the train frames within ±3 EV of their stack's best frame, computes each candidate
head's features from the same subsampled (grey, r) pixels ``ev_correction`` uses, and prints the mean
|error| of a 5-fold cross-validation that keeps each stack's frames in one fold (least-absolute-deviation
fits). Train stacks only: val and lockbox stay for measuring the chosen head.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from exposure_cli.analyzers import create_analyzer
from exposure_cli.color import grey, srgb_to_linear
from exposure_cli.correction import FLOOR, HIGH, LOW, ev_from_samples, sample_step
from exposure_cli.data.brackets import load_stacks

FORMS = {"two-number": [0], "levels": [0, 1, 2, 3], "levels+ends": [0, 1, 2, 3, 4, 5]}


def features(g: np.ndarray, r: np.ndarray) -> list[float]:
    """[stops, mean r, log2 mean linear level, share mid-tones, share crushed, share clipped]."""
    level = float(np.maximum(srgb_to_linear(g), FLOOR).mean())
    return [ev_from_samples(g, r), float(r.mean()), float(np.log2(level)), float(((g >= LOW) & (g <= HIGH)).mean()),
            float((g < 0.02).mean()), float((g > 0.98).mean())]


def collect(weights: str, brackets: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    analyzer = create_analyzer("eat", weights=weights, device="cpu")
    rows, targets, groups = [], [], []
    try:
        for stack in load_stacks(brackets, "train"):
            keep = [k for k, rel in enumerate(stack.relative_ev_to_best) if abs(rel) <= 3.0]
            images = [stack.frame(k).astype(np.float32) / 255.0 for k in keep]
            for k, image, pred in zip(keep, images, analyzer.analyze_batch(images)):
                g = grey(image)
                step = sample_step(g.size)
                rows.append(features(g[::step, ::step].ravel(), pred[::step, ::step].ravel()))
                targets.append(-float(stack.relative_ev_to_best[k]))
                groups.append(stack.id)
    finally:
        analyzer.close()
    return np.array(rows), np.array(targets), np.array(groups)


def lad(x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import QuantileRegressor

    return QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(x, y)


def grouped_cv_error(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5) -> float:
    ids = sorted(set(groups))
    np.random.default_rng(0).shuffle(ids)
    fold_of = {g: i % folds for i, g in enumerate(ids)}
    fold = np.array([fold_of[g] for g in groups])
    errors = np.zeros(len(y))
    for i in range(folds):
        train, test = fold != i, fold == i
        errors[test] = np.abs(np.clip(lad(x[train], y[train]).predict(x[test]), -10, 10) - y[test])
    return float(errors.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights")
    parser.add_argument("--brackets", type=Path, default=Path("corpus/brackets"))
    args = parser.parse_args()
    x, y, groups = collect(args.weights, args.brackets)
    print(f"{len(y)} frames of {len(set(groups))} train stacks; uncalibrated error {np.abs(x[:, 0] - y).mean():.3f}")
    for name, cols in FORMS.items():
        fitted = lad(x[:, cols], y)
        print(f"{name:12s} CV {grouped_cv_error(x[:, cols], y, groups):.3f}  "
              f"train {np.abs(fitted.predict(x[:, cols]) - y).mean():.3f}  coef {np.round(fitted.coef_, 3)}")


if __name__ == "__main__":
    main()
