import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exposure_cli.stats import HIST_BINS, Thresholds, column, histogram, image_stats, shares_from_hist


def test_column_names():
    assert column("global", "over_pct") == "over_pct"
    assert column("face", "over_pct") == "face_over_pct"


def test_known_shares():
    r = np.array([[-0.5, -0.1, 0.0, 0.05], [0.1, 0.35, -0.31, 0.0]], np.float32)
    row = image_stats(r, {"face": np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)}, Thresholds())
    assert row["over_pct"] == pytest.approx(3 / 8 * 100)
    assert row["under_pct"] == pytest.approx(2 / 8 * 100)
    assert row["severe_over_pct"] == pytest.approx(2 / 8 * 100)
    assert row["face_over_pct"] == pytest.approx(100.0)
    assert row["face_area_pct"] == pytest.approx(25.0)
    assert np.isnan(row["sky_over_pct"]) and row["sky_area_pct"] == 0
    assert row["hist"].sum() == 8 and len(row["hist"]) == HIST_BINS


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=300),
       st.sampled_from([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5]))
def test_histogram_answers_edge_thresholds_exactly(values, t):
    r = np.array(values, np.float32)
    th = Thresholds(over=t, under=t, severe=min(1.0, t + 0.1))
    direct = image_stats(r.reshape(1, -1), {}, th)
    from_hist = shares_from_hist(histogram(r), th)
    for k in ("over_pct", "under_pct", "bad_pct"):
        assert from_hist[k] == pytest.approx(direct[k], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.3), st.integers(0, 2**31 - 1))
def test_brightening_never_lowers_over_share(delta, seed):
    """Shifting every residual towards 'over' (a brighter photo) cannot reduce the over-exposed share."""
    r = np.random.default_rng(seed).uniform(-1, 1, (16, 16)).astype(np.float32)
    before = image_stats(r, {}, Thresholds())["over_pct"]
    after = image_stats(np.clip(r - delta, -1, 1), {}, Thresholds())["over_pct"]
    assert after >= before


def test_joint_region_histograms_match_one_region_at_a_time():
    from exposure_cli.stats import region_stats

    rng = np.random.default_rng(0)
    r = rng.uniform(-1, 1, (60, 80)).astype(np.float32)
    masks = {k: rng.random((60, 80)) > 0.5 for k in ("face", "person", "subject", "background", "sky")}
    row = image_stats(r, masks, Thresholds())
    for name, mask in masks.items():
        alone = region_stats(r, mask, Thresholds())
        for metric in ("area_pct", "over_pct", "under_pct", "severe_bad_pct", "p95_residual", "mean_residual"):
            assert row[f"{name}_{metric}"] == pytest.approx(alone[metric])
        assert (row[f"{name}_hist"] == alone["hist"]).all()


def test_off_grid_thresholds_are_exact():
    r = np.array([[-0.1234, -0.1233, 0.1234, 0.1235]], np.float32)
    row = image_stats(r, {}, Thresholds(over=0.1234, under=0.1235, severe=0.5))
    assert row["over_pct"] == pytest.approx(25.0)
    assert row["under_pct"] == pytest.approx(25.0)


def test_percentiles_and_means_within_half_a_fine_bin():
    r = np.random.default_rng(1).normal(0, 0.2, (100, 100)).clip(-1, 1).astype(np.float32)
    row = image_stats(r, {}, Thresholds())
    assert row["p50_residual"] == pytest.approx(float(np.median(r)), abs=1e-3)
    assert row["p95_residual"] == pytest.approx(float(np.percentile(r, 95)), abs=1e-3)
    assert row["mean_abs_residual"] == pytest.approx(float(np.abs(r).mean()), abs=5e-4)


#: Values just past, on, and just short of every threshold of Thresholds(over=0.1, under=0.175, severe=0.3);
#: each side has its own threshold, so a side reading the other side's threshold is caught too.
EDGE_VALUES = [-0.3001, -0.3, -0.2999, -0.1001, -0.1, -0.0999, 0.0, 0.1, 0.1749, 0.175, 0.1751, 0.2999, 0.3, 0.3001]
EDGE_EXPECTED = {  # counted by hand from EDGE_VALUES
    "over_pct": 5,          # −0.3001, −0.3, −0.2999, −0.1001, −0.1   (not −0.0999)
    "under_pct": 5,         # 0.175, 0.1751, 0.2999, 0.3, 0.3001      (not 0.1749, not 0.1)
    "bad_pct": 10,
    "severe_over_pct": 2,   # −0.3001, −0.3                            (not −0.2999)
    "severe_under_pct": 2,  # 0.3, 0.3001                              (not 0.2999)
    "severe_bad_pct": 4,
}


@pytest.mark.parametrize("path", ["map", "histogram", "map, raw values"])
def test_each_threshold_counts_values_on_and_past_it_and_not_just_short_of_it(path):
    r = np.array([EDGE_VALUES], np.float32)
    expected = dict(EDGE_EXPECTED)
    if path == "map":  # thresholds on the 0.001 grid: answered from the fine histogram
        got = image_stats(r, {}, Thresholds(over=0.1, under=0.175, severe=0.3))
    elif path == "histogram":  # what rescore answers from the stored 0.025-wide histogram
        got = shares_from_hist(image_stats(r, {}, Thresholds())["hist"], Thresholds(over=0.1, under=0.175, severe=0.3))
    else:  # one threshold off the grid: every side is compared on the raw values
        got = image_stats(r, {}, Thresholds(over=0.1, under=0.175, severe=0.29985))
        expected.update(severe_over_pct=3, severe_under_pct=3, severe_bad_pct=6)  # ±0.2999 are past ±0.29985
    for metric, count in expected.items():
        assert got[metric] == pytest.approx(count / len(EDGE_VALUES) * 100, abs=1e-9), metric


def test_shares_between_histogram_edges_are_interpolated_inside_the_bin():
    # 40 values spread evenly over the bin (−0.125, −0.1]: a threshold a fifth into the bin counts a fifth
    r = np.linspace(-0.1249, -0.1, 40, dtype=np.float32).reshape(1, -1)
    hist = image_stats(r, {}, Thresholds())["hist"]
    assert shares_from_hist(hist, Thresholds(over=0.12))["over_pct"] == pytest.approx(20.0)
    assert shares_from_hist(hist, Thresholds(over=0.1))["over_pct"] == pytest.approx(100.0)
    assert shares_from_hist(hist, Thresholds(over=0.125))["over_pct"] == pytest.approx(0.0)


def test_histogram_matrix_answers_each_row_on_its_own_and_empty_rows_are_nan():
    from exposure_cli.stats import shares_from_hist_matrix

    one = image_stats(np.array([EDGE_VALUES], np.float32), {}, Thresholds())["hist"]
    other = image_stats(np.full((1, 10), -0.5, np.float32), {}, Thresholds())["hist"]
    matrix = np.stack([one, np.zeros(HIST_BINS, np.int64), other])
    shares = shares_from_hist_matrix(matrix, Thresholds(over=0.1, under=0.175, severe=0.3))
    assert shares["over_pct"][0] == pytest.approx(5 / 14 * 100)
    assert np.isnan(shares["over_pct"][1]) and np.isnan(shares["under_pct"][1])
    assert shares["over_pct"][2] == 100.0 and shares["severe_over_pct"][2] == 100.0
    with pytest.raises(ValueError, match=f"N×{HIST_BINS} histogram matrix, got shape \\(3, 7\\)"):
        shares_from_hist_matrix(np.zeros((3, 7)), Thresholds())


def test_ev_correction_in_image_stats_equals_the_per_region_estimator():
    """The shared subsample in image_stats gives exactly correction.ev_correction, region by region."""
    from exposure_cli.correction import ev_correction
    from exposure_cli.stats import Thresholds, column, image_stats

    rng = np.random.default_rng(3)
    h, w = 750, 1000
    g = rng.uniform(0, 1, (h, w)).astype(np.float32)
    r = rng.uniform(-0.3, 0.3, (h, w)).astype(np.float32)
    masks = {"face": np.zeros((h, w), bool), "subject": np.zeros((h, w), bool), "sky": np.zeros((h, w), bool)}
    masks["face"][10:14, 10:14] = True  # tiny: estimated from every pixel
    masks["subject"][200:600, 300:800] = True
    masks["sky"][:100] = True
    row = image_stats(r, masks, Thresholds(), grey=g)
    assert row["ev_correction"] == ev_correction(g, r)
    for name, m in masks.items():
        assert row[column(name, "ev_correction")] == ev_correction(g, r, m)


def test_regions_not_computed_have_nan_area_and_absent_ones_zero():
    from exposure_cli.stats import Thresholds, column, image_stats

    r = np.zeros((40, 50), np.float32)
    subject = np.zeros((40, 50), bool)
    subject[5:20, 5:20] = True
    row = image_stats(r, {"subject": subject}, Thresholds(), computed=("face", "person", "subject"))
    assert row[column("subject", "area_pct")] > 0
    assert row[column("face", "area_pct")] == 0  # looked for, not found
    assert np.isnan(row[column("sky", "area_pct")])  # not computed


# --- issue 17: tests written from the surviving mutants of `python tools/mutation.py stats` (docs/TESTING.md) ---


def test_column_helpers_name_every_region_column_in_report_order():
    from exposure_cli.stats import REGIONS, all_stat_columns, hist_column, region_columns

    assert hist_column("global") == "hist" and hist_column("sky") == "sky_hist"
    assert region_columns("face") == [
        "face_area_pct", "face_over_pct", "face_under_pct", "face_bad_pct", "face_severe_over_pct",
        "face_severe_under_pct", "face_severe_bad_pct", "face_mean_residual", "face_mean_abs_residual",
        "face_p05_residual", "face_p50_residual", "face_p95_residual", "face_ev_correction", "face_hist"]
    cols = all_stat_columns()
    assert len(cols) == len(set(cols)) == 14 * len(REGIONS)
    assert cols[:2] == ["area_pct", "over_pct"] and cols[13] == "hist" and cols[14] == "face_area_pct"
    assert cols[-1] == "sky_hist"


def test_thresholds_accept_zero_to_one_exclusive_of_zero_and_give_floats():
    assert Thresholds(over=1, under=1.0, severe=1.0).as_dict() == {"over": 1.0, "under": 1.0, "severe": 1.0}
    assert Thresholds(over=0.2, under=0.15, severe=0.5).as_dict() == {"over": 0.2, "under": 0.15, "severe": 0.5}
    assert type(Thresholds(over=1).as_dict()["over"]) is float
    for name, bad in (("over", 0.0), ("under", -0.1), ("severe", 1.0001), ("over", 1.5), ("under", 2.0)):
        with pytest.raises(ValueError, match=rf"^threshold {name}={bad} must be in \(0, 1\]$"):
            Thresholds(**{name: bad})


def test_region_stats_of_the_whole_map_and_of_a_mask_of_zeros_and_ones():
    from exposure_cli.stats import region_stats

    # none of the values reaches the top fine bins: the histogram must still have all of them
    r = np.array([[-0.1234, -0.1233, 0.1234, 0.1235], [0.0, 0.0, 0.0, 0.0]], np.float32)
    off_grid = Thresholds(over=0.1234, under=0.1235, severe=0.5)  # compared exactly on the values
    whole = region_stats(r, None, off_grid)
    assert whole["area_pct"] == 100.0
    assert whole["over_pct"] == pytest.approx(100 / 8) and whole["under_pct"] == pytest.approx(100 / 8)
    assert np.isnan(whole["ev_correction"])
    assert whole["hist"].dtype == np.int64 and whole["hist"].shape == (HIST_BINS,) and whole["hist"].sum() == 8
    # the same photo, its top row as a 0/1 integer mask (the same as a boolean one)
    top = region_stats(r, np.array([[1, 1, 1, 1], [0, 0, 0, 0]], np.uint8), off_grid)
    assert top["area_pct"] == 50.0
    assert top["over_pct"] == 25.0 and top["under_pct"] == 25.0 and top["hist"].sum() == 4
    # on the grid, answered from the fine histogram: at 0.123 every value of the top row is past
    grid = region_stats(r, np.array([[1, 1, 1, 1], [0, 0, 0, 0]], np.uint8), Thresholds(over=0.123, under=0.123))
    assert grid["over_pct"] == 50.0 and grid["under_pct"] == 50.0


def test_off_grid_thresholds_are_exact_in_every_region():
    r = np.array([[-0.1234, -0.1233, 0.1234, 0.1235], [-0.1234, -0.1234, 0.1235, 0.0]], np.float32)
    face = np.array([[0, 1, 1, 0], [0, 0, 0, 0]], bool)
    sky = np.array([[0, 0, 0, 0], [1, 1, 1, 0]], bool)
    row = image_stats(r, {"face": face, "sky": sky}, Thresholds(over=0.1234, under=0.1235, severe=0.5))
    assert row["over_pct"] == pytest.approx(300 / 8) and row["under_pct"] == pytest.approx(200 / 8)
    assert row["face_over_pct"] == 0.0 and row["face_under_pct"] == 0.0  # −0.1233 and 0.1234 fall short
    assert row["sky_over_pct"] == pytest.approx(200 / 3) and row["sky_under_pct"] == pytest.approx(100 / 3)


def test_values_within_float32_rounding_of_a_grid_threshold_count_as_on_it():
    """On the 0.001 grid a value a millionth short of the threshold counts (it is the threshold, rounded in
    float32 on its way from the model); a threshold off the grid is compared exactly on the values."""
    r = np.array([[-0.1 + 5e-7, 0.2 - 5e-7, 0.0, 0.0]], np.float32)
    assert float(r[0, 0]) > -0.1 and float(r[0, 1]) < 0.2
    on_grid = image_stats(r, {}, Thresholds(over=0.1, under=0.2, severe=0.3))
    assert on_grid["over_pct"] == 25.0 and on_grid["under_pct"] == 25.0
    # a third threshold off the grid puts the values in play, but 0.1 and 0.2 are still answered on the grid
    mixed = image_stats(r, {}, Thresholds(over=0.1, under=0.2, severe=0.3333))
    assert mixed["over_pct"] == 25.0 and mixed["under_pct"] == 25.0
    exact = image_stats(r, {}, Thresholds(over=0.0999994, under=0.1999996))
    assert exact["over_pct"] == 25.0 and exact["under_pct"] == 0.0
    # the same above one half (0.6, 0.7: the grid test must not round t · 1000 any other way)
    high = np.array([[-0.7 + 5e-7, 0.6 - 5e-7, 0.0, 0.0]], np.float32)
    assert float(high[0, 0]) > -0.7 and float(high[0, 1]) < 0.6
    on_grid = image_stats(high, {}, Thresholds(over=0.7, under=0.6, severe=0.8))
    assert on_grid["over_pct"] == 25.0 and on_grid["under_pct"] == 25.0


def test_a_threshold_of_one_counts_nothing_and_just_below_one_counts_the_end_bin():
    r = np.array([[-0.9995, -0.5, 0.0, 0.5, 0.9995]], np.float32)
    at_one = image_stats(r, {}, Thresholds(over=1.0, under=1.0, severe=1.0))
    hist = at_one["hist"]
    from_hist = shares_from_hist(hist, Thresholds(over=1.0, under=1.0, severe=1.0))
    for got in (at_one, from_hist):
        for metric in ("over_pct", "under_pct", "bad_pct", "severe_bad_pct"):
            assert got[metric] == 0.0, metric
    near = image_stats(r, {}, Thresholds(over=0.999, under=0.999, severe=0.999))
    assert near["over_pct"] == 20.0 and near["under_pct"] == 20.0 and near["severe_bad_pct"] == 40.0
    # the stored histogram has 0.025-wide bins: 0.999 is 96 % of the way into the end bin
    from_hist = shares_from_hist(hist, Thresholds(over=0.999, under=0.999))
    assert from_hist["over_pct"] == pytest.approx(20 * 0.04) and from_hist["under_pct"] == pytest.approx(20 * 0.04)


def _fine_centre(i: int) -> float:
    """The centre of fine bin i (bins 0.001 wide from −1)."""
    return -1.0 + (i + 0.5) / 1000


def test_means_and_quantiles_interpolate_inside_the_fine_bins():
    """Values at fine-bin centres; quantile q lies in the first bin whose cumulative count reaches q·n, a
    share (q·n − count below) ÷ count in bin of the way into it. Expected values worked out by hand."""
    # n = 20: 1 in bin 0, 2 in bin 1, 8 in bin 1000, 9 in bin 1999
    counts = {0: 1, 1: 2, 1000: 8, 1999: 9}
    r = np.array([[_fine_centre(i) for i, c in counts.items() for _ in range(c)]], np.float32)
    row = image_stats(r, {}, Thresholds())
    assert row["p05_residual"] == pytest.approx(-1 + (0 + 1 / 1) / 1000, abs=1e-9)     # q·n = 1: all of bin 0
    assert row["p50_residual"] == pytest.approx(-1 + (1000 + 7 / 8) / 1000, abs=1e-9)  # 10: 3 below, 7 of 8
    assert row["p95_residual"] == pytest.approx(-1 + (1999 + 8 / 9) / 1000, abs=1e-9)  # 19: 11 below, 8 of 9
    centres = [_fine_centre(i) for i, c in counts.items() for _ in range(c)]
    assert row["mean_residual"] == pytest.approx(sum(centres) / 20, abs=1e-9)
    assert row["mean_abs_residual"] == pytest.approx(sum(abs(c) for c in centres) / 20, abs=1e-9)
    # n = 40: 1 in bin 0, 2 in bin 1, 37 in bin 1500
    counts = {0: 1, 1: 2, 1500: 37}
    r = np.array([[_fine_centre(i) for i, c in counts.items() for _ in range(c)]], np.float32)
    row = image_stats(r, {}, Thresholds())
    assert row["p05_residual"] == pytest.approx(-1 + (1 + 1 / 2) / 1000, abs=1e-9)      # 2: 1 below, 1 of 2
    assert row["p50_residual"] == pytest.approx(-1 + (1500 + 17 / 37) / 1000, abs=1e-9)
    assert row["p95_residual"] == pytest.approx(-1 + (1500 + 35 / 37) / 1000, abs=1e-9)
    assert row["mean_residual"] == pytest.approx((_fine_centre(0) + 2 * _fine_centre(1) + 37 * 0.5005) / 40, abs=1e-9)


def test_a_one_pixel_photo_and_the_columns_of_an_absent_region():
    row = image_stats(np.array([[0.5]], np.float32), {"face": np.zeros((1, 1), bool)}, Thresholds())
    assert row["area_pct"] == 100.0 and row["under_pct"] == 100.0 and row["p50_residual"] == pytest.approx(0.5005)
    assert row["hist"].dtype == np.int64 and row["hist"][60] == 1
    assert row["face_area_pct"] == 0.0
    assert row["face_hist"].dtype == np.int64 and row["face_hist"].shape == (HIST_BINS,) and not row["face_hist"].any()
    for metric in ("over_pct", "mean_residual", "p05_residual", "p95_residual", "ev_correction"):
        assert np.isnan(row[f"face_{metric}"]), metric
    assert np.isnan(row["ev_correction"])  # no grey levels given


def test_a_region_code_gives_what_the_masks_give():
    rng = np.random.default_rng(5)
    r = rng.uniform(-1, 1, (30, 40)).astype(np.float32)
    masks = {"face": rng.random((30, 40)) > 0.7, "sky": rng.random((30, 40)) > 0.4}
    code = masks["face"].astype(np.uint8) | (masks["sky"].astype(np.uint8) << 1)
    th = Thresholds(over=0.1234, under=0.2, severe=0.3)
    from_masks = image_stats(r, masks, th)
    from_code = image_stats(r, None, th, region_code=(code, ("face", "sky")))
    assert from_code.keys() == from_masks.keys()
    for key, value in from_masks.items():
        np.testing.assert_array_equal(from_code[key], value, err_msg=key)
    assert from_code["face_area_pct"] == pytest.approx(100 * masks["face"].mean())
    # no code: no region, whatever names come with it
    none = image_stats(r, None, th, region_code=(None, ("face",)))
    assert none["face_area_pct"] == 0.0 and none["over_pct"] == from_masks["over_pct"]


def test_ev_correction_follows_the_estimator_for_every_region_size_and_calibration():
    """200×200 photo: the even subsample takes every second row and column. A region with at least 64
    subsampled pixels is estimated from the subsample, a smaller one from all its pixels."""
    from exposure_cli.correction import EVCalibration, ev_correction, sample_step

    rng = np.random.default_rng(7)
    g = rng.uniform(0, 1, (200, 200))  # float64, as a library caller may pass them
    r = rng.uniform(-0.3, 0.3, (200, 200))
    assert sample_step(g.size) == 2
    masks = {"face": np.zeros((200, 200), bool), "subject": np.zeros((200, 200), bool), "sky": np.zeros((200, 200), bool)}
    masks["face"][10:26, 10:26] = True  # 8×8 = 64 subsampled pixels: just enough for the subsample
    masks["subject"][50:150, 40:160] = True
    masks["sky"][101:116, 1:16] = True  # starts on odd rows and columns: 7×7 = 49 subsampled, all 225 used
    cal = EVCalibration(gain=1.7, offset=0.25)
    row = image_stats(r, masks, Thresholds(), grey=g, ev_calibration=cal)
    assert row["ev_correction"] == ev_correction(g, r, calibration=cal)
    for name, m in masks.items():
        assert row[column(name, "ev_correction")] == ev_correction(g, r, m, calibration=cal), name
    # without regions, and with the default calibration
    alone = image_stats(r, {}, Thresholds(), grey=g)
    assert alone["ev_correction"] == ev_correction(g, r)
    assert alone["ev_correction"] != row["ev_correction"]


def test_a_float64_map_gives_exactly_what_the_same_map_in_float32_gives():
    """The model's maps are float32; a float64 map is rounded to float32 first, so scan, rescore and library
    callers agree on values that sit within float32 rounding of a threshold."""
    from exposure_cli.stats import region_stats

    values = np.array([[0.099998995, -0.099999035, 0.12345 - 1e-10, -0.12345 + 1e-10, 0.3, -0.7]])
    assert (histogram(values) == histogram(values.astype(np.float32))).all()
    assert histogram(values)[43] == 0  # 0.099998995 is 0.1 within float32 rounding: in the bin from 0.1
    for th in (Thresholds(), Thresholds(over=0.12345, under=0.12345)):
        as64, as32 = image_stats(values, {}, th), image_stats(values.astype(np.float32), {}, th)
        for key in ("over_pct", "under_pct", "mean_residual", "p50_residual"):
            assert as64[key] == as32[key], (th, key)
        one64, one32 = region_stats(values, None, th), region_stats(values.astype(np.float32), None, th)
        assert one64["over_pct"] == one32["over_pct"] and one64["under_pct"] == one32["under_pct"]
    assert image_stats(values, {}, Thresholds(over=0.12345, under=0.12345))["under_pct"] == pytest.approx(200 / 6)


def test_values_outside_minus_one_to_one_count_in_the_end_bins():
    hist = histogram(np.array([np.inf, -np.inf, 5.0, -5.0, 3e9, -3e9], np.float32))
    assert hist[0] == 3 and hist[-1] == 3 and hist.sum() == 6
    assert hist.dtype == np.int64


def test_float32_histograms_of_large_photos_give_exact_shares():
    """2²⁴ + 2 pixels: float32 cannot count them one by one, so the shares are computed in float64."""
    from exposure_cli.stats import shares_from_hist_matrix

    hist = np.zeros((1, HIST_BINS), np.float32)
    hist[0, 0], hist[0, 40], hist[0, 79] = 2.0**24, 1.0, 1.0
    shares = shares_from_hist_matrix(hist, Thresholds())
    total = 2.0**24 + 2
    assert shares["over_pct"][0] == 100 * 2.0**24 / total
    assert shares["under_pct"][0] == 100 * 1 / total


def test_a_threshold_just_outside_the_grid_tolerance_is_compared_exactly():
    """t · 1000 = 1e-6 exactly in double: the first threshold above 0 that is off the 0.001 grid (the grid
    tolerance is *less than* a millionth of a fine bin), so a residual of 0 is not past it."""
    t = 9.999999999999999e-10
    assert t * 1000 == 1e-6
    row = image_stats(np.zeros((1, 4), np.float32), {}, Thresholds(over=t, under=t, severe=t))
    assert row["over_pct"] == 0.0 and row["under_pct"] == 0.0


def _fine_bin_index_reference(residual):
    """fine_bin_index as it was written before it was computed in place (the expression it must equal)."""
    from exposure_cli.stats import FINE_BINS

    v = np.clip(np.asarray(residual, dtype=np.float32), -1.0, 1.0)
    pos = v * np.float32(FINE_BINS / 2.0)
    pos += np.copysign(np.float32(1e-3), v)
    pos += np.float32(FINE_BINS / 2.0)
    idx = pos.astype(np.int32)
    np.clip(idx, 0, FINE_BINS - 1, out=idx)
    return idx


def test_fine_bin_index_in_place_equals_the_expression_it_replaces():
    from exposure_cli.stats import fine_bin_index

    rng = np.random.default_rng(7)
    grid = np.arange(-1000, 1001, dtype=np.float32) / np.float32(1000)  # every bin edge, and its neighbours
    noisy = (rng.random((300, 400), dtype=np.float32) - 0.5) * np.float32(2.4)  # beyond ±1 too
    noisy.flat[:7] = [0.0, -0.0, 1.0, -1.0, 0.001, -0.001, np.float32(1e-9)]
    cases = [grid, np.nextafter(grid, np.float32(2)), np.nextafter(grid, np.float32(-2)), noisy,
             noisy[::3, 1::2],  # a strided view
             noisy.astype(np.float64), noisy[:1, :1]]
    for case in cases:
        got, want = fine_bin_index(case), _fine_bin_index_reference(case)
        assert got.dtype == want.dtype == np.int32 and got.shape == want.shape
        assert np.array_equal(got, want)
    original = noisy.copy()
    fine_bin_index(noisy)
    assert np.array_equal(noisy, original)  # the caller's map is not touched
    with np.errstate(invalid="ignore"):
        odd = np.array([np.nan, np.inf, -np.inf, 0.5], np.float32)
        assert np.array_equal(fine_bin_index(odd), _fine_bin_index_reference(odd))


def test_fine_bin_index_puts_infinite_and_huge_values_in_the_end_bins_without_a_cast_warning():
    """Both ends are clipped before the float → int32 cast, whose result is undefined for ±inf and past 2**31."""
    import warnings

    from exposure_cli.stats import FINE_BINS, fine_bin_index

    values = np.array([-np.inf, -1e10, -3.0, 3.0, 1e10, np.inf], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "invalid value encountered in cast" would be a RuntimeWarning
        got = fine_bin_index(values)
    assert got.tolist() == [0, 0, 0, FINE_BINS - 1, FINE_BINS - 1, FINE_BINS - 1]


def test_a_residual_map_with_nan_is_refused_by_image_stats():
    """NaN has no bin (fine_bin_index would clip it into bin 0, r = -1, counted severely over-exposed):
    image_stats refuses the map, naming how many values are NaN; a map without NaN is read as before."""
    r = np.zeros((4, 5), np.float32)
    r[1, 2] = np.nan
    r[3, 0] = np.nan
    with pytest.raises(ValueError) as info:
        image_stats(r, None, Thresholds())
    assert str(info.value) == ("residual map contains NaN (2 of 20 values); an analyzer must give a number in "
                               "[-1, 1] for every pixel")
    r[np.isnan(r)] = 0.0
    out = image_stats(r, None, Thresholds())
    assert out[column("global", "over_pct")] == 0.0 and out[column("global", "bad_pct")] == 0.0
