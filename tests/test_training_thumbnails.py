"""Thumbnail views for training: what the analyzer shows of a small photo, with the label that follows."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exposure_cli.color import grey, linear_to_srgb, srgb_to_linear  # noqa: E402
from exposure_cli.imageops import to_working_size  # noqa: E402
from exposure_cli.training.thumbnails import thumbnail_view, thumbnail_views  # noqa: E402
from exposure_cli.training.twins import grey as _grey  # noqa: E402  (BT.601 grey of B×3×H×W tensors)


def _pair(seed: int = 0, size: int = 64):
    """A detailed ideal crop and the same crop 1.5 stops under, as B×3×H×W tensors, and their label."""
    rng = np.random.default_rng(seed)
    ideal = rng.uniform(0.05, 0.95, (size, size, 3)).astype(np.float32)
    observed = linear_to_srgb(srgb_to_linear(ideal) * 2.0 ** -1.5)
    residual = grey(ideal) - grey(observed)
    as_batch = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    return as_batch(ideal), as_batch(observed), torch.from_numpy(residual)[None, None]


def test_the_label_of_a_thumbnail_view_is_the_ideal_minus_the_observed_at_that_resolution():
    ideal, observed, residual = _pair()
    view, label = thumbnail_view(observed, residual, 0.2)
    ideal_view, _ = thumbnail_view(ideal, residual, 0.2)
    assert torch.allclose(label, _grey(ideal_view) - _grey(view), atol=1e-5)
    # Detail is gone: the view is smooth where the crop was noise, and its mean is kept.
    assert float(view.std()) < 0.5 * float(observed.std())
    assert float(view.mean()) == pytest.approx(float(observed.mean()), abs=0.01)
    assert view.shape == observed.shape and label.shape == residual.shape


def test_a_thumbnail_view_matches_how_the_analyzer_enlarges_a_small_photo():
    # A 64 px crop shrunk to 16 px and enlarged back equals the analyzer's thumbnail copy of the 16 px photo.
    _, observed, residual = _pair(size=64)
    view, _ = thumbnail_view(observed, residual, 0.25)
    small = torch.nn.functional.interpolate(observed, size=(16, 16), mode="area")[0].permute(1, 2, 0).numpy()
    copy = to_working_size(small, 64)
    assert np.abs(copy - view[0].permute(1, 2, 0).numpy()).max() < 1e-5


def test_thumbnail_views_replace_about_the_share_asked_for():
    _, observed, residual = _pair()
    images, residuals = observed.repeat(200, 1, 1, 1), residual.repeat(200, 1, 1, 1)
    generator = torch.Generator().manual_seed(3)
    out_images, out_residuals, scales = thumbnail_views(images, residuals, 0.3, generator, (0.15, 0.5))
    changed = scales < 1
    assert 40 <= int(changed.sum()) <= 80
    assert float(scales[changed].min()) >= 0.15 and float(scales[changed].max()) <= 0.5
    assert torch.equal(out_images[~changed], images[~changed])
    assert not torch.equal(out_images[changed][0], images[0])
    assert torch.equal(images, observed.repeat(200, 1, 1, 1))  # the input is not modified
    same = thumbnail_views(images, residuals, 0.0, generator)
    assert same[0] is images and bool((same[2] == 1).all())


@pytest.mark.parametrize("bad", [dict(share=1.5), dict(scale_range=(0.0, 0.5)), dict(scale_range=(0.6, 0.5))])
def test_thumbnail_views_refuse_bad_settings(bad):
    _, observed, residual = _pair()
    with pytest.raises(ValueError):
        thumbnail_views(observed, residual, **{"share": 0.5, **bad})


def test_a_run_with_thumbnail_views_trains_and_records_the_share(tmp_path):
    from exposure_cli.training import TrainConfig, train

    from tests.test_train import GlobalShiftDataset

    config = TrainConfig(architecture="eat_iea_test", steps=4, batch_size=4, lr=1e-3, threads=1, log_every_s=0.0,
                         checkpoint_every_s=3600, validate_every_s=3600, val_batches=1, thumbnail_share=0.5)
    result = train(config, GlobalShiftDataset(16), tmp_path / "run", val_dataset=GlobalShiftDataset(4, seed=1))
    assert result.steps == 4 and np.isfinite(result.last_loss)
    card = json.loads((tmp_path / "run" / "best" / "card.json").read_text())
    assert card["training"]["thumbnail_share"] == 0.5
