"""The residual convention, pinned with numbers: r = grey(ideal) − grey(observed), r < 0 over-exposed.

Every producer (simulator, EV twins, baseline analyzer) computes residuals through
``color.residual_from_grey``, and the statistics read the over/under sides from ``color.OVER_SIGN``, so
the sign is written once. These tests fail if it flips.
"""

import numpy as np
import pytest

from exposure_cli.analyzers.baseline import baseline_residual
from exposure_cli.color import (
    OVER_SIGN,
    UNDER_SIGN,
    grey,
    ideal_grey,
    linear_to_srgb,
    residual,
    residual_from_grey,
    srgb_to_linear,
)
from exposure_cli.stats import Thresholds, image_stats, shares_from_hist


def flat(level: float, shape=(4, 5)) -> np.ndarray:
    return np.full((*shape, 3), level, np.float32)


def test_lighter_than_ideal_is_negative_and_darker_is_positive():
    assert residual(flat(0.5), flat(0.8)) == pytest.approx(np.full((4, 5), -0.3), abs=1e-6)
    assert residual(flat(0.5), flat(0.2)) == pytest.approx(np.full((4, 5), 0.3), abs=1e-6)
    assert residual(flat(0.5), flat(0.5)) == pytest.approx(np.zeros((4, 5)), abs=1e-7)
    assert OVER_SIGN == -1.0 and UNDER_SIGN == 1.0


def test_residual_is_grey_difference_clipped():
    ideal = np.zeros((1, 1, 3), np.float32)
    ideal[..., 1] = 1.0  # pure green: grey 0.587
    observed = np.zeros((1, 1, 3), np.float32)
    assert residual(ideal, observed)[0, 0] == pytest.approx(0.587, abs=1e-6)
    assert residual(observed, ideal)[0, 0] == pytest.approx(-0.587, abs=1e-6)
    assert residual_from_grey(np.float32(0.0), np.float32(3.0)) == -1.0
    assert residual_from_grey(np.float32(3.0), np.float32(0.0)) == 1.0
    assert residual(flat(0.9), flat(0.1)).dtype == np.float32


def test_residual_from_grey_gives_the_same_sign_on_torch_tensors():
    torch = pytest.importorskip("torch")
    r = residual_from_grey(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.9, 0.5, 0.1]))
    assert r.tolist() == pytest.approx([-0.4, 0.0, 0.4], abs=1e-6)


def test_a_lighter_copy_reads_over_exposed_in_the_statistics():
    t = Thresholds()
    over_row = image_stats(residual(flat(0.4), flat(0.7)), None, t)
    under_row = image_stats(residual(flat(0.4), flat(0.1)), None, t)
    assert (over_row["over_pct"], over_row["under_pct"]) == (100.0, 0.0)
    assert (under_row["over_pct"], under_row["under_pct"]) == (0.0, 100.0)
    assert shares_from_hist(over_row["hist"], t)["over_pct"] == 100.0
    assert shares_from_hist(under_row["hist"], t)["under_pct"] == 100.0


def test_baseline_reads_white_as_over_and_black_as_under():
    assert float(baseline_residual(flat(1.0)).mean()) < -0.5
    assert float(baseline_residual(flat(0.0)).mean()) > 0.5
    mid = baseline_residual(flat(0.45))
    assert np.all(mid == 0.0)


def test_grey_is_bt601():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)
    assert grey(rgb)[0].tolist() == pytest.approx([0.299, 0.587, 0.114], abs=1e-7)
    assert grey(rgb.astype(np.float64)).dtype == np.float32  # always float32, whatever comes in
    assert grey([[[255, 255, 255]]]).dtype == np.float32


def test_ideal_grey_inverts_the_residual():
    observed = np.array([0.2, 0.5, 0.9], np.float32)
    r = np.array([0.3, 0.0, -0.4], np.float32)
    assert ideal_grey(observed, r) == pytest.approx([0.5, 0.5, 0.5], abs=1e-6)
    assert residual_from_grey(ideal_grey(observed, r), observed) == pytest.approx(r, abs=1e-6)


def test_srgb_transfer_functions_match_iec_61966_2_1():
    # the linear segment below 0.04045 (sRGB) / 0.0031308 (linear), the 2.4 power curve above it
    srgb = np.array([0.0, 0.02, 0.04045, 0.5, 1.0], np.float32)
    linear = np.array([0.0, 0.02 / 12.92, 0.0031308, ((0.5 + 0.055) / 1.055) ** 2.4, 1.0])
    assert srgb_to_linear(srgb) == pytest.approx(linear, abs=2e-6)
    assert linear_to_srgb(np.float32(0.18)) == pytest.approx(1.055 * 0.18 ** (1 / 2.4) - 0.055, abs=1e-6)
    assert linear_to_srgb(np.float32(0.002)) == pytest.approx(0.002 * 12.92, abs=1e-7)
    assert linear_to_srgb(linear.astype(np.float32)) == pytest.approx(srgb, abs=2e-6)
    # inputs are clipped to [0, 1] on both sides, and come back float32
    assert srgb_to_linear(np.array([-0.5, 1.5], np.float32)).tolist() == [0.0, 1.0]
    assert linear_to_srgb(np.array([-0.5, 1.5], np.float32)).tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert srgb_to_linear(srgb).dtype == np.float32 and linear_to_srgb(srgb).dtype == np.float32


def test_baseline_residual_in_reused_buffers_equals_its_plain_expressions():
    """baseline_residual computes into reused buffers for speed; it must equal the plain expressions."""
    from exposure_cli.analyzers.baseline import GLOBAL_GAIN, HIGHLIGHT, SHADOW, TARGET_MEAN, TOLERANCE, baseline_residual
    from exposure_cli.color import residual_from_grey

    def plain(rgb):
        rgb = np.asarray(rgb, dtype=np.float32)
        g = grey(rgb)
        offset = TARGET_MEAN - float(g.mean())
        global_term = GLOBAL_GAIN * float(np.sign(offset)) * max(abs(offset) - TOLERANCE, 0.0)
        brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
        top = np.where(brightest >= 0.995, np.maximum(g, HIGHLIGHT + 0.5 * (1 - HIGHLIGHT)), g)
        over = np.clip((top - HIGHLIGHT) / (1.0 - HIGHLIGHT), 0.0, 1.0)
        under = np.clip((SHADOW - g) / SHADOW, 0.0, 1.0)
        observed = g.astype(np.float64)
        return residual_from_grey(observed + (global_term + under - over), observed).astype(np.float32)

    rng = np.random.default_rng(11)
    clipped = rng.random((40, 50, 3)).astype(np.float32)
    clipped[..., 1] = np.where(clipped[..., 1] > 0.5, 0.995, np.nextafter(np.float32(0.995), np.float32(0)))
    for rgb in (rng.uniform(-0.1, 1.1, (60, 80, 3)).astype(np.float32), rng.uniform(0, 0.2, (30, 40, 3)),
                rng.uniform(0.8, 1.0, (30, 40, 3)).astype(np.float32), np.ones((5, 6, 3), np.float32),
                np.zeros((5, 6, 3), np.float32), clipped):
        got, want = baseline_residual(rgb), plain(rgb)
        assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)
