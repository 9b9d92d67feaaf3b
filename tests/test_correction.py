"""Stops of correction from a residual map (exposure_cli.correction) and its report columns."""

import math

import numpy as np
import pytest

from exposure_cli.color import grey
from exposure_cli.correction import LIMIT, ev_correction
from exposure_cli.data.simulator import render_ev
from exposure_cli.stats import Thresholds, column, image_stats


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return data.coffee()[::2, ::2].astype(np.float32) / 255.0


@pytest.mark.parametrize("ev", [-3.0, -2.0, -1.0, 1.0, 2.0])
def test_exact_labels_give_the_stops_that_undo_the_shift(photo, ev):
    observed, label = render_ev(photo, ev)
    stops = ev_correction(grey(observed), label)
    # positive brightens: a frame shot `ev` stops off needs `-ev` stops
    assert stops == pytest.approx(-ev, abs=0.35)


def test_sign_and_order_follow_exposure(photo):
    values = [ev_correction(grey(o), r) for o, r in (render_ev(photo, ev) for ev in (-2, -1, 1, 2))]
    assert values[0] > values[1] > 0 > values[2] > values[3]


def test_zero_map_means_no_correction(photo):
    assert ev_correction(grey(photo), np.zeros(photo.shape[:2], np.float32)) == 0.0


def test_black_frame_is_finite_large_and_positive():
    black = np.zeros((32, 48), np.float32)
    stops = ev_correction(black, np.full_like(black, 0.45))
    assert 5.0 < stops <= LIMIT


def test_white_frame_is_negative():
    white = np.ones((32, 48), np.float32)
    assert ev_correction(white, np.full_like(white, -0.5)) < -1.0


def test_region_mask_and_empty_region(photo):
    observed, label = render_ev(photo, -2.0)
    g = grey(observed)
    half = np.zeros(g.shape, bool)
    half[:, : g.shape[1] // 2] = True
    assert ev_correction(g, label, half) == pytest.approx(2.0, abs=0.4)
    assert math.isnan(ev_correction(g, label, np.zeros(g.shape, bool)))


def test_report_columns_carry_the_correction_per_region(photo):
    observed, label = render_ev(photo, -1.0)
    mask = np.zeros(label.shape, bool)
    mask[10:60, 10:60] = True
    row = image_stats(label, {"face": mask}, Thresholds(), grey=grey(observed))
    assert row[column("global", "ev_correction")] == pytest.approx(1.0, abs=0.3)
    assert row[column("face", "ev_correction")] > 0
    assert math.isnan(row[column("sky", "ev_correction")])
    # without the photo's grey levels the column exists but is NaN
    row = image_stats(label, None, Thresholds())
    assert math.isnan(row[column("global", "ev_correction")])


def test_calibration_scales_the_estimate_and_identity_is_default(photo):
    from exposure_cli.correction import EVCalibration

    observed, label = render_ev(photo, -1.0)
    g = grey(observed)
    plain = ev_correction(g, label)
    assert ev_correction(g, label, None, EVCalibration(2.0, 0.5)) == pytest.approx(2 * plain + 0.5)
    assert EVCalibration.from_card({}) == EVCalibration()
    assert EVCalibration.from_card({"ev_correction": {"gain": 1.5, "offset": -0.2}}) == EVCalibration(1.5, -0.2)
    row = image_stats(label, None, Thresholds(), grey=g, ev_calibration=EVCalibration(2.0, 0.0))
    assert row[column("global", "ev_correction")] == pytest.approx(2 * plain, abs=1e-5)


def test_least_absolute_deviation_fit_recovers_gain_and_offset():
    from exposure_cli.training.calibrate import fit_lad

    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, 200)
    y = 1.6 * x - 0.3
    y[:10] += 5.0  # outliers: least absolute deviation ignores them
    gain, offset = fit_lad(x, y)
    assert gain == pytest.approx(1.6, abs=0.02) and offset == pytest.approx(-0.3, abs=0.02)
