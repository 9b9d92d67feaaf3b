"""tools/ev_head_cv.py: stage 36's cross-validation of stops-head forms and the rule that reads it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ev_head_cv", ROOT / "tools" / "ev_head_cv.py")
cv = importlib.util.module_from_spec(spec)
sys.modules["ev_head_cv"] = cv
spec.loader.exec_module(cv)


def _rows(**known_all):
    return {name: {"cv_known": k, "cv_all": a} for name, (k, a) in known_all.items()}


def test_the_rule_needs_the_margin_on_known_exposures_and_the_slack_on_all_frames() -> None:
    forms = cv.FORMS
    assert cv.decide(_rows(**{"A-all": (0.666, 0.608), "C-all": (0.625, 0.578), "E-all": (0.630, 0.568)}), forms) is None
    assert cv.decide(_rows(**{"A-all": (0.70, 0.60), "C-all": (0.64, 0.61), "E-all": (0.60, 0.63)}), forms) == "C-all"
    # within TIE of the best, the form with fewer inputs wins
    assert cv.decide(_rows(**{"A-all": (0.70, 0.60), "A-known": (0.645, 0.60), "E-w": (0.64, 0.60)}), forms) == "A-known"
    assert cv.decide(_rows(**{"A-all": (0.70, 0.60), "A-known": (0.645, 0.60), "E-w": (0.62, 0.60)}), forms) == "E-w"


def test_grouped_cross_validation_keeps_each_stack_in_one_fold_and_scores_held_out_frames() -> None:
    from exposure_cli.correction import HEAD_INPUTS

    groups = np.repeat([f"s{i}" for i in range(20)], 4)
    folds = cv.folds_of(groups)
    assert all(len(set(folds[groups == g])) == 1 for g in set(groups)) and set(folds) == set(range(5))
    rng = np.random.default_rng(0)
    stops = rng.uniform(-3, 3, len(groups))
    extra = np.zeros((len(groups), len(HEAD_INPUTS)))
    known = np.isin(groups, [f"s{i}" for i in range(8)])
    exact = cv.grouped_cv_errors(stops, extra, 1.3 * stops - 0.2, groups, known, [], "all")
    assert exact.shape == stops.shape and exact.max() < 1e-3  # a law the head can hold is learnt out of fold
    # one stack far off: its own error is large out of fold, and the others barely move
    targets = 1.3 * stops - 0.2
    targets[groups == "s3"] += 2.0
    errors = cv.grouped_cv_errors(stops, extra, targets, groups, known, [], "all")
    assert errors[groups == "s3"].mean() == pytest.approx(2.0, abs=0.05) and errors[groups != "s3"].max() < 0.05
