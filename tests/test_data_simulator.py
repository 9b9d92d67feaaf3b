"""The exposure simulator: label sign and scale, clipping, originals, determinism, content-following fields."""

from __future__ import annotations

import numpy as np
import pytest

from exposure_cli.color import grey, linear_to_srgb, srgb_to_linear
from exposure_cli.data.simulator import (
    IDENTITY,
    SimulatorConfig,
    ToneCurve,
    luma_mask_field,
    random_ev_field,
    render_ev,
    simulate_photo,
    simulate_radiance,
)

from conftest import photo_like


def _photo(seed: int = 0) -> np.ndarray:
    return photo_like(96, 128, seed=seed).astype(np.float32) / 255.0


def test_plus_one_ev_on_mid_grey_gives_the_expected_negative_residual() -> None:
    patch = np.full((8, 8, 3), 0.5, np.float32)
    observed, res = render_ev(patch, 1.0)
    expected_obs = float(linear_to_srgb(np.float32(2.0) * srgb_to_linear(np.float32(0.5))))
    assert expected_obs == pytest.approx(0.6863, abs=1e-3)  # mid-grey one stop up, in sRGB
    q = round(expected_obs * 255) / 255  # the observed image is 8-bit
    assert np.allclose(observed, q)
    assert np.allclose(res, 0.5 - q, atol=1e-6)
    assert float(res.mean()) < 0  # brighter than ideal = over = negative


def test_minus_one_ev_is_under_and_symmetric_in_sign() -> None:
    patch = np.full((4, 4, 3), 0.5, np.float32)
    _, res = render_ev(patch, -1.0)
    assert np.all(res > 0.1)


def test_clipped_white_reads_exactly_how_much_brighter_than_ideal() -> None:
    patch = np.full((4, 4, 3), 0.9, np.float32)  # linear 0.787: +1 EV clips at full well
    observed, res = render_ev(patch, 1.0)
    assert np.allclose(observed, 1.0)
    assert np.allclose(res, 0.9 - 1.0, atol=1e-6)
    white = np.ones((4, 4, 3), np.float32)
    assert np.allclose(render_ev(white, 2.0)[1], 0.0)  # already white: cannot get brighter


def test_zero_ev_is_exactly_zero_and_unchanged() -> None:
    img = _photo()
    observed, res = render_ev(img, 0.0)
    assert not res.any()
    assert np.abs(observed - img).max() <= 0.5 / 255 + 1e-6


def test_residual_grows_with_ev_and_stays_in_range() -> None:
    img = _photo(1)
    means = [float(render_ev(img, ev)[1].mean()) for ev in (-3, -2, -1, 0, 1, 2, 3)]
    assert all(b < a for a, b in zip(means, means[1:]))
    for ev in (-5, 5):
        _, res = render_ev(img, ev)
        assert res.min() >= -1 and res.max() <= 1


def test_simulated_samples_are_deterministic_by_seed() -> None:
    img = _photo(2)
    a = simulate_photo(img, np.random.default_rng(7))
    b = simulate_photo(img, np.random.default_rng(7))
    c = simulate_photo(img, np.random.default_rng(8))
    assert np.array_equal(a.observed, b.observed) and np.array_equal(a.residual, b.residual)
    assert a.params == b.params
    assert not np.array_equal(a.observed, c.observed)


def test_sample_shapes_ranges_and_label_definition() -> None:
    img = _photo(3)
    cfg = SimulatorConfig(p_original=0.0, p_noise=0.0, p_jpeg=0.0)
    for seed in range(8):
        s = simulate_photo(img, np.random.default_rng(seed), cfg)
        assert s.observed.shape == img.shape and s.residual.shape == img.shape[:2]
        assert s.observed.dtype == np.float32 and s.residual.dtype == np.float32
        assert 0 <= s.observed.min() and s.observed.max() <= 1
        assert -1 <= s.residual.min() and s.residual.max() <= 1
        # without noise/JPEG the observed image is the 8-bit clean render: the label is grey(ideal') − grey(observed)
        assert np.abs(s.residual - (grey(s.ideal) - grey(s.observed))).max() < 1.5 / 255


def test_label_sign_follows_the_ev_field() -> None:
    img = _photo(4)
    cfg = SimulatorConfig(p_original=0.0, p_noise=0.0, p_jpeg=0.0, p_tone_curve=0.0)
    for seed in range(6):
        s = simulate_photo(img, np.random.default_rng(seed), cfg)
        brighter = s.ev_field > 0.5
        darker = s.ev_field < -0.5
        if brighter.sum() > 50:
            assert s.residual[brighter].mean() < 0
        if darker.sum() > 50:
            assert s.residual[darker].mean() > 0


def test_originals_have_zero_labels_whatever_the_tone_curve() -> None:
    img = _photo(5)
    cfg = SimulatorConfig(p_original=1.0, p_original_untouched=0.0, p_tone_curve=1.0)
    for seed in range(5):
        s = simulate_photo(img, np.random.default_rng(seed), cfg)
        assert s.params["original"] is True
        assert not s.residual.any()
    untouched = simulate_photo(img, np.random.default_rng(0), SimulatorConfig(p_original=1.0, p_original_untouched=1.0))
    assert np.abs(untouched.observed - img).max() <= 0.5 / 255 + 1e-6


def test_tone_curve_is_monotone_with_fixed_ends() -> None:
    y = np.linspace(0, 1, 1001, dtype=np.float32)
    for c, g in [(-0.3, 0.88), (0.6, 1.12), (0.0, 1.0), (0.4, 0.9)]:
        t = ToneCurve(c, g)(y)
        assert t[0] == pytest.approx(0.0, abs=1e-6) and t[-1] == pytest.approx(1.0, abs=1e-6)
        assert np.all(np.diff(t) >= 0)
    assert IDENTITY.is_identity


def test_luminance_mask_follows_image_content() -> None:
    img = np.zeros((64, 64, 3), np.float32)
    img[:, :32] = 0.1
    img[:, 32:] = 0.8
    rng = np.random.default_rng(0)
    field = luma_mask_field(img, rng, SimulatorConfig())
    left, right = field[:, :24], field[:, 40:]
    assert abs(float(left.mean() - right.mean())) > 0.3  # the two regions get different exposure
    assert float(left.std()) < 0.05 and float(right.std()) < 0.05  # and each is exposed evenly


def test_ev_field_is_bounded_and_deterministic() -> None:
    img = _photo(6)
    a, pa = random_ev_field(img, np.random.default_rng(3))
    b, pb = random_ev_field(img, np.random.default_rng(3))
    assert np.array_equal(a, b) and pa == pb
    assert np.abs(a).max() <= 5.0


def test_radiance_sample_labels_clipped_highlights_as_over() -> None:
    h, w = 48, 64
    radiance = np.full((h, w, 3), 0.18, np.float32)
    radiance[10:20, 10:20] = 50.0  # a lamp, far beyond full well
    ideal = np.full((h, w, 3), 0.46, np.float32)
    ideal[10:20, 10:20] = 0.8  # the fused ideal keeps it below white
    cfg = SimulatorConfig(p_gradient=0, p_vignette=0, p_spots=0, p_regions=0, p_luma_mask=0, p_noise=0, p_jpeg=0,
                          global_ev=(0.0, 0.0), p_global_uniform=1.0, p_original=0.0)
    s = simulate_radiance(radiance, ideal, np.random.default_rng(0), cfg)
    assert s.residual[12:18, 12:18].mean() == pytest.approx(0.8 - 1.0, abs=0.01)
    assert abs(float(s.residual[30:, 30:].mean())) < 0.02


def test_radiance_originals_are_the_fused_ideal_labelled_zero() -> None:
    h, w = 48, 64
    radiance = np.full((h, w, 3), 0.02, np.float32)  # a dark scene: any single exposure would differ from the ideal
    ideal = np.full((h, w, 3), 0.4, np.float32)
    ideal[:, 32:] = 0.7
    cfg = SimulatorConfig(p_original=1.0, p_original_untouched=1.0)
    s = simulate_radiance(radiance, ideal, np.random.default_rng(0), cfg)
    assert s.params["original"] is True and s.params["kind"] == "hdr"
    assert np.abs(s.observed - ideal).max() <= 1 / 255 + 1e-6  # the ideal as an 8-bit image
    assert not s.residual.any()
    never = SimulatorConfig(p_original=0.0)
    assert not any(simulate_radiance(radiance, ideal, np.random.default_rng(i), never).params["original"]
                   for i in range(20))


def test_local_share_gates_the_local_parts_and_one_draws_as_before():
    from exposure_cli.data.simulator import SimulatorConfig, random_ev_field

    rgb = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)
    # p_local = 1.0 (the default) takes no extra random number: the same fields as before, draw for draw
    a_rng, b_rng = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(30):
        a, info_a = random_ev_field(rgb, a_rng, SimulatorConfig())
        b, info_b = random_ev_field(rgb, b_rng, SimulatorConfig(p_local=1.0))
        assert np.array_equal(a, b) and info_a == info_b
    rng = np.random.default_rng(8)
    fields = [random_ev_field(rgb, rng, SimulatorConfig(p_local=0.0)) for _ in range(40)]
    assert all(info["local"] == [] and np.all(ev == info["global_ev"]) for ev, info in fields)
    rng = np.random.default_rng(9)
    with_parts = sum(bool(random_ev_field(rgb, rng, SimulatorConfig(p_local=0.3))[1]["local"]) for _ in range(400))
    always = sum(bool(random_ev_field(rgb, rng, SimulatorConfig())[1]["local"]) for _ in range(400))
    assert with_parts < 0.45 * always  # about 0.3 of the draws that would have had parts
