"""Cross-validate forms of the stops-of-correction head on the train bracket stacks (docs/MODEL.md, stages 8, 14, 36).

    python tools/ev_head_cv.py --weights weights/ --brackets corpus/brackets_n

Runs the analyzer over the train frames within ±3 EV of their stack's best frame
(:func:`exposure_cli.training.calibrate.collect`: the map's stops and the head's extra inputs from the same
subsampled pixels ``ev_correction`` reads) and prints, per head form and fit set, the mean |error| of a
5-fold cross-validation that keeps each stack's frames in one fold (least-absolute-deviation fits, clamped
like the product): over all held-out frames (``CV-all``) and over the held-out frames whose offsets are
exposure facts (``CV-known``: EXIF, file names, ``list.txt``). Train stacks only: val and lockbox stay for
measuring the chosen head. Then stage 36's rule (written before the fit) picks a form, or none.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from exposure_cli.correction import HEAD_INPUTS, LIMIT
from exposure_cli.training.calibrate import collect, fit_head, fit_lad, head_error

STAGE14_INPUTS = ["clipped", "crushed", "mean_r", "level"]
#: Stage 36's candidates: name → (extra inputs, fit set). A-all is the form the shipped head has.
FORMS = {
    "A-all": ([], "all"), "A-known": ([], "known"),
    "C-all": (STAGE14_INPUTS, "all"), "C-known": (STAGE14_INPUTS, "known"),
    "E-all": (list(HEAD_INPUTS), "all"), "E-known": (list(HEAD_INPUTS), "known"), "E-w": (list(HEAD_INPUTS), "balanced"),
}
#: The map-free diagnostic (not a candidate): frame levels only, fitted on known exposures.
MAP_FREE = ["level", "level_p10", "level_p50", "level_p90", "clipped", "crushed"]
#: Stage 36's rule: the margin on CV-known a candidate needs over A-all, and the most CV-all may rise.
KNOWN_MARGIN, ALL_SLACK, TIE = 0.05, 0.02, 0.01


def folds_of(groups: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each frame's fold: whole stacks per fold, fixed by a seed-0 shuffle of the stack ids."""
    ids = sorted(set(groups))
    np.random.default_rng(0).shuffle(ids)
    fold_of = {g: i % folds for i, g in enumerate(ids)}
    return np.array([fold_of[g] for g in groups])


def grouped_cv_errors(stops, extra, targets, groups, known, inputs, fit_set="all", folds: int = 5) -> np.ndarray:
    """Each frame's held-out |error| (its stack's fold left out of the fit)."""
    fold = folds_of(groups, folds)
    errors = np.empty(len(targets))
    for i in range(folds):
        train, test = fold != i, fold == i
        entry = fit_head(stops[train], extra[train], targets[train], inputs, known=known[train], fit_set=fit_set)
        for j in np.flatnonzero(test):
            errors[j] = head_error(stops[j:j + 1], extra[j:j + 1], targets[j:j + 1], entry)
    return errors


def map_free_cv_errors(extra, targets, groups, known, folds: int = 5) -> np.ndarray:
    """The diagnostic: a linear LAD head on frame levels only (no map), fitted on known train frames."""
    cols = [HEAD_INPUTS.index(name) for name in MAP_FREE]
    x = extra[:, cols]
    fold = folds_of(groups, folds)
    errors = np.empty(len(targets))
    for i in range(folds):
        fit = (fold != i) & known
        gain, offset, w = fit_lad(x[fit, 0], targets[fit], x[fit, 1:])
        test = fold == i
        value = np.clip(gain * x[test, 0] + offset + x[test, 1:] @ w, -LIMIT, LIMIT)
        errors[test] = np.abs(value - targets[test])
    return errors


def decide(rows: dict[str, dict[str, float]], forms: dict) -> str | None:
    """Stage 36's rule: the lowest CV-known among the forms at least KNOWN_MARGIN below A-all's whose CV-all
    is at most ALL_SLACK above A-all's (within TIE of the best: the fewest inputs); None keeps A-all."""
    ref = rows["A-all"]
    ok = [n for n in rows if n != "A-all" and rows[n]["cv_known"] <= ref["cv_known"] - KNOWN_MARGIN
          and rows[n]["cv_all"] <= ref["cv_all"] + ALL_SLACK]
    if not ok:
        return None
    best = min(rows[n]["cv_known"] for n in ok)
    near = [n for n in ok if rows[n]["cv_known"] <= best + TIE]
    return min(near, key=lambda n: (len(forms[n][0]), rows[n]["cv_known"]))


def parse_arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options of the stops-head cross-validation tools: weights, bracket folder, optional JSON out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", default="weights")
    parser.add_argument("--brackets", type=Path, default=Path("corpus/brackets_n"))
    parser.add_argument("--json", type=Path, help="also write the table and the decision here")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0])
    stops, extra, targets, groups, known = collect(args.weights, args.brackets, "train")
    print(f"{len(targets)} frames of {len(set(groups))} train stacks ({known.sum()} frames of "
          f"{len(set(groups[known]))} stacks with known exposures); uncalibrated error "
          f"{np.abs(stops - targets).mean():.3f} (known {np.abs(stops - targets)[known].mean():.3f})")
    rows: dict[str, dict[str, float]] = {}
    for name, (inputs, fit_set) in FORMS.items():
        errors = grouped_cv_errors(stops, extra, targets, groups, known, inputs, fit_set)
        entry = fit_head(stops, extra, targets, inputs, known=known, fit_set=fit_set)
        rows[name] = {"cv_all": float(errors.mean()), "cv_known": float(errors[known].mean()),
                      "cv_estimated": float(errors[~known].mean()), "entry": entry}
        print(f"{name:8s} CV-all {rows[name]['cv_all']:.3f}  CV-known {rows[name]['cv_known']:.3f}  "
              f"CV-estimated {rows[name]['cv_estimated']:.3f}  train {entry['train_error_after']:.3f}  "
              f"gain {entry['gain']} offset {entry['offset']} weights {entry.get('weights', {})}")
    free = map_free_cv_errors(extra, targets, groups, known)
    print(f"map-free diagnostic (levels only, known fit): CV-all {free.mean():.3f}  CV-known {free[known].mean():.3f}")
    choice = decide(rows, FORMS)
    print(f"decision: {choice or 'none — the A-all form stays'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "map_free": {"cv_all": float(free.mean()),
                                         "cv_known": float(free[known].mean())}, "decision": choice}, indent=1))


if __name__ == "__main__":
    main()
