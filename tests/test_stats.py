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
