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


def test_least_absolute_deviation_fit_recovers_extra_input_weights():
    from exposure_cli.training.calibrate import fit_lad

    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, 300)
    inputs = rng.uniform(0, 1, (300, 2))
    y = 0.9 * x + 0.2 - 1.5 * inputs[:, 0] + 0.7 * inputs[:, 1]
    y[:15] -= 4.0  # outliers
    gain, offset, w = fit_lad(x, y, inputs)
    assert gain == pytest.approx(0.9, abs=0.02) and offset == pytest.approx(0.2, abs=0.03)
    assert w == pytest.approx([-1.5, 0.7], abs=0.03)


def test_head_inputs_measure_clipped_and_crushed_shares_mean_residual_and_level():
    from exposure_cli.correction import FLOOR, head_inputs
    from exposure_cli.color import srgb_to_linear

    g = np.array([0.0, 0.01, 0.5, 0.5, 0.975, 0.99, 1.0, 0.3], np.float32)
    r = np.array([0.4, 0.3, 0.0, 0.1, -0.2, -0.3, -0.5, 0.0], np.float32)
    found = head_inputs(g, r)
    assert found["crushed"] == pytest.approx(2 / 8)  # 0.0 and 0.01 (≤ 0.02)
    assert found["clipped"] == pytest.approx(2 / 8)  # 0.99 and 1.0 (≥ 0.98), not 0.975
    assert found["mean_r"] == pytest.approx(r.mean(), abs=1e-7)
    assert found["level"] == pytest.approx(np.log2(np.maximum(srgb_to_linear(g), FLOOR).mean()), abs=1e-6)
    brighter = head_inputs(np.clip(g + 0.1, 0, 1), r)
    assert brighter["level"] > found["level"] and brighter["crushed"] < found["crushed"]


def test_head_with_inputs_reads_a_clipped_frame_further_over_and_round_trips_through_the_card(photo):
    from exposure_cli.correction import EVCalibration, head_inputs, map_stops, sample_step

    card = {"ev_correction": {"gain": 1.1, "offset": -0.1, "weights": {"clipped": -3.0, "crushed": 2.0}}}
    head = EVCalibration.from_card(card)
    assert head == EVCalibration(1.1, -0.1, (("clipped", -3.0), ("crushed", 2.0)))
    for ev in (-2.0, 1.0, 2.5):
        observed, label = render_ev(photo, ev)
        step = sample_step(observed.shape[0] * observed.shape[1])  # the even subsample ev_correction reads
        g = grey(observed)[::step, ::step].ravel()
        r = np.asarray(label, np.float32)[::step, ::step].ravel()
        inputs = head_inputs(g, r)
        expected = 1.1 * map_stops(g, r) - 0.1 - 3.0 * inputs["clipped"] + 2.0 * inputs["crushed"]
        assert ev_correction(grey(observed), label, None, head) == pytest.approx(expected, abs=1e-4)
    # the same map: a frame with more clipped pixels reads further over (more negative) under this head
    observed, label = render_ev(photo, 2.5)
    plain = ev_correction(grey(observed), label, None, EVCalibration(1.1, -0.1))
    assert ev_correction(grey(observed), label, None, head) < plain - 0.01
    with pytest.raises(ValueError, match="unknown"):
        EVCalibration.from_card({"ev_correction": {"weights": {"sharpness": 1.0}}})


def test_fit_head_adds_inputs_only_when_asked_and_reports_train_errors():
    from exposure_cli.training.calibrate import fit_head, head_error

    rng = np.random.default_rng(2)
    stops = rng.uniform(-3, 3, 120)
    extra = np.column_stack([rng.uniform(0, 0.5, 120), rng.uniform(0, 0.5, 120),
                             rng.normal(0, 0.1, 120), rng.uniform(-6, -1, 120)] + [rng.normal(0, 1, 120)] * 6)
    targets = 1.2 * stops - 2.0 * extra[:, 0] + 0.1
    plain = fit_head(stops, extra, targets)
    with_clip = fit_head(stops, extra, targets, ["clipped"])
    assert "weights" not in plain and with_clip["weights"]["clipped"] == pytest.approx(-2.0, abs=0.02)
    assert with_clip["train_error_after"] < 0.01 < plain["train_error_after"]
    assert head_error(stops, extra, targets, with_clip) == pytest.approx(with_clip["train_error_after"], abs=1e-4)
    with pytest.raises(ValueError, match="unknown head input"):
        fit_head(stops, extra, targets, ["sharpness"])


def test_head_inputs_read_every_pixel_percentile_levels_and_the_maps_ends():
    from exposure_cli.color import srgb_to_linear
    from exposure_cli.correction import FLOOR, HEAD_INPUTS, head_inputs, map_stops

    rng = np.random.default_rng(3)
    g = rng.uniform(0.0, 1.0, 4000).astype(np.float32)
    r = np.where(g < 0.1, 0.3, np.where(g > 0.8, -0.2, 0.05)).astype(np.float32)
    found = head_inputs(g, r)
    assert tuple(found) == HEAD_INPUTS
    # stops over every pixel: the ratio of mean linear levels of ideal and photo, with nothing left out
    ideal = np.clip(g + r, 0, 1)  # r > 0 brightens (UNDER_SIGN = +1)
    expected = np.log2(np.maximum(srgb_to_linear(ideal), FLOOR).mean() / np.maximum(srgb_to_linear(g), FLOOR).mean())
    assert found["stops_all"] == pytest.approx(expected, abs=1e-5)
    mid = (g >= 0.1) & (g <= 0.8)
    assert found["stops_all"] != pytest.approx(map_stops(g, r), abs=1e-3)  # map_stops reads the mid-tones only
    assert map_stops(g[mid], r[mid]) == pytest.approx(map_stops(g, r), abs=1e-6)
    for q in (10, 50, 90):
        level = np.log2(max(float(srgb_to_linear(np.float32(np.percentile(g, q)))), FLOOR))
        assert found[f"level_p{q}"] == pytest.approx(level, abs=1e-5)
    assert found["level_p10"] < found["level_p50"] < found["level_p90"] <= 0.0
    assert found["r_dark"] == pytest.approx(0.3 * np.mean(g < 0.1), abs=1e-6)
    assert found["r_bright"] == pytest.approx(-0.2 * np.mean(g > 0.8), abs=1e-6)
    black = head_inputs(np.zeros(16, np.float32), np.zeros(16, np.float32))
    assert black["level_p10"] == black["level_p90"] == pytest.approx(np.log2(FLOOR)) and black["stops_all"] == 0.0


def test_fit_sets_fit_on_known_exposures_only_or_weigh_both_kinds_equally():
    from exposure_cli.correction import HEAD_INPUTS
    from exposure_cli.training.calibrate import fit_head

    rng = np.random.default_rng(4)
    n_known, n_est = 40, 160
    stops = rng.uniform(-3, 3, n_known + n_est)
    extra = np.zeros((len(stops), len(HEAD_INPUTS)))
    known = np.arange(len(stops)) < n_known
    targets = np.where(known, 1.5 * stops, 1.0 * stops)  # the two kinds of offsets disagree on the gain
    everything = fit_head(stops, extra, targets, known=known, fit_set="all")
    only_known = fit_head(stops, extra, targets, known=known, fit_set="known")
    assert everything["gain"] == pytest.approx(1.0, abs=0.01)  # the estimated frames are the median
    assert only_known["gain"] == pytest.approx(1.5, abs=0.01) and only_known["frames"] == n_known
    assert "known exposures only" in only_known["fitted_on"] and only_known["train_error_after"] < 0.01
    # balanced: the 40 known frames weigh as much as the 160 estimated ones, so when 50 of those agree with
    # the known gain, that gain holds the weighted majority (0.5 + 0.5 · 50/160) — unweighted it is 90 of 200
    mixed = np.where(known | (np.arange(len(stops)) >= len(stops) - 50), 1.5 * stops, 1.0 * stops)
    assert fit_head(stops, extra, mixed, known=known, fit_set="all")["gain"] == pytest.approx(1.0, abs=0.01)
    balanced = fit_head(stops, extra, mixed, known=known, fit_set="balanced")
    assert balanced["gain"] == pytest.approx(1.5, abs=0.01) and balanced["frames"] == n_known + n_est
    assert "weighted equally" in balanced["fitted_on"]
    with pytest.raises(ValueError, match="needs to know"):
        fit_head(stops, extra, targets, fit_set="known")
    with pytest.raises(ValueError, match="unknown fit set"):
        fit_head(stops, extra, targets, known=known, fit_set="some")
