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
