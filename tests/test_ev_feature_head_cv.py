"""tools/ev_feature_head_cv.py: stage 44's ridge stops head, its nested grouped CV and its rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ev_feature_head_cv", ROOT / "tools" / "ev_feature_head_cv.py")
probe = importlib.util.module_from_spec(spec)
sys.modules["ev_feature_head_cv"] = probe
spec.loader.exec_module(probe)


def _stacks(n_stacks=30, frames=5, channels=12, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_stacks), frames)
    x = rng.normal(size=(len(groups), channels))
    w = 0.3 * rng.normal(size=channels)  # targets within ±LIMIT, as stops are
    y = x @ w + 0.7 + noise * rng.normal(size=len(groups))
    return x, y, groups


def test_ridge_recovers_a_linear_target_and_scores_it_out_of_fold() -> None:
    x, y, groups = _stacks()
    model = probe.fit_ridge(x, y, 0.1)
    assert np.abs(probe.predict_ridge(model, x) - y).mean() < 0.06
    errors, alphas = probe.nested_cv_errors(x, y, groups)
    assert errors.shape == y.shape and errors.mean() < 0.1
    assert len(alphas) == 5 and set(alphas) <= set(probe.ALPHAS)
    # a target the inputs do not carry: held-out error stays near the target's own spread
    noise = np.random.default_rng(1).normal(size=len(y))
    errors, _ = probe.nested_cv_errors(x, noise, groups)
    assert errors.mean() > 0.6


def test_the_inner_cv_prefers_a_strong_penalty_when_the_inputs_are_noise() -> None:
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 4)
    x = rng.normal(size=(80, 60))  # many columns, no signal: an unpenalised fit chases noise
    y = rng.normal(size=80)
    assert probe.inner_alpha(x, y, groups) >= 100.0


def test_the_rule_needs_the_margin_on_known_and_the_slack_on_all() -> None:
    ref = {"cv_all": 0.60, "cv_known": 0.66}
    assert probe.decide({"A-all": ref, "P": {"cv_all": 0.60, "cv_known": 0.62}}) is None  # 0.04 below
    assert probe.decide({"A-all": ref, "P": {"cv_all": 0.63, "cv_known": 0.55}}) is None  # CV-all 0.03 above
    rows = {"A-all": ref, "P": {"cv_all": 0.61, "cv_known": 0.60}, "Q": {"cv_all": 0.62, "cv_known": 0.58}}
    assert probe.decide(rows) == "Q"
