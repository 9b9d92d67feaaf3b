"""Cross-validate forms of the stops-of-correction head on the train bracket stacks (docs/MODEL.md, stages 8, 14).

    python tools/ev_head_cv.py --weights weights/ --brackets corpus/brackets

Runs the analyzer over the train frames within ±3 EV of their stack's best frame
(:func:`exposure_cli.training.calibrate.collect`: the map's stops and the head's extra inputs from the same
subsampled pixels ``ev_correction`` reads) and prints, per head form, the mean |error| of a 5-fold
cross-validation that keeps each stack's frames in one fold (least-absolute-deviation fits, clamped like
the product). Train stacks only: val and lockbox stay for measuring the chosen head.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from exposure_cli.training.calibrate import collect, fit_head, head_error

#: Head forms: the extra inputs each adds to ``gain · stops + offset`` (stage 14's A, B, C).
FORMS = {"A two-number": [], "B + ends": ["clipped", "crushed"], "C + ends + levels": ["clipped", "crushed", "mean_r", "level"]}


def grouped_cv_error(stops: np.ndarray, extra: np.ndarray, targets: np.ndarray, groups: np.ndarray,
                     inputs: list[str], folds: int = 5) -> float:
    """Mean |error| over held-out folds of whole stacks (the fold of a stack fixed by a seeded shuffle)."""
    ids = sorted(set(groups))
    np.random.default_rng(0).shuffle(ids)
    fold_of = {g: i % folds for i, g in enumerate(ids)}
    fold = np.array([fold_of[g] for g in groups])
    errors = []
    for i in range(folds):
        train, test = fold != i, fold == i
        entry = fit_head(stops[train], extra[train], targets[train], inputs)
        errors.append(head_error(stops[test], extra[test], targets[test], entry) * test.sum())
    return float(np.sum(errors) / len(targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights")
    parser.add_argument("--brackets", type=Path, default=Path("corpus/brackets"))
    args = parser.parse_args()
    stops, extra, targets, groups = collect(args.weights, args.brackets, "train")
    print(f"{len(targets)} frames of {len(set(groups))} train stacks; uncalibrated error {np.abs(stops - targets).mean():.3f}")
    for name, inputs in FORMS.items():
        entry = fit_head(stops, extra, targets, inputs)
        print(f"{name:20s} CV {grouped_cv_error(stops, extra, targets, groups, inputs):.3f}  "
              f"train {entry['train_error_after']:.3f}  gain {entry['gain']} offset {entry['offset']} "
              f"weights {entry.get('weights', {})}")


if __name__ == "__main__":
    main()
