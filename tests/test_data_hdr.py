"""HDR radiance maps: perspective crops, metering, single exposures and the Mertens-fusion ideal."""

from __future__ import annotations

import numpy as np
import pytest

from exposure_cli.color import grey
from exposure_cli.data.hdr import equirect_to_perspective, meter, mertens_ideal, render_single
from exposure_cli.data.simulator import render_ev


def _panorama(h: int = 64, w: int = 128) -> np.ndarray:
    """A generated equirectangular radiance map: dim textured walls, bright sky band, a sun 2000× brighter."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pano = 0.05 + 0.03 * (np.sin(x / 5) * np.cos(y / 7) + 1)
    pano = np.repeat(pano[..., None], 3, axis=-1)
    pano[: h // 3] *= 20.0  # sky
    pano[h // 6 - 3 : h // 6 + 3, w // 2 - 3 : w // 2 + 3] = 100.0  # sun, straight ahead (yaw 0)
    return pano.astype(np.float32)


def test_perspective_crop_looks_where_it_is_told() -> None:
    pano = _panorama()
    ahead = equirect_to_perspective(pano, yaw=0, pitch=55, fov=60, size=(48, 32))
    behind = equirect_to_perspective(pano, yaw=180, pitch=55, fov=60, size=(48, 32))
    assert ahead.shape == (32, 48, 3)
    assert ahead.max() > 50  # the sun is in view
    assert behind.max() < 50  # and not behind us


def test_metering_maps_mean_log_luminance_to_18_percent() -> None:
    rad = equirect_to_perspective(_panorama(), 90, 0, 80, (64, 48))
    metered = meter(rad)
    log_mean = float(np.exp(np.mean(np.log(grey(metered) + 1e-6))))
    assert log_mean == pytest.approx(0.18, rel=0.01)


def test_fusion_ideal_holds_highlights_and_shadows_a_single_exposure_loses() -> None:
    rad = meter(equirect_to_perspective(_panorama(), 0, 45, 70, (64, 48)))
    ideal = mertens_ideal(rad)
    single = render_single(rad, 0.0).astype(np.float32) / 255.0
    assert ideal.shape == rad.shape and ideal.dtype == np.float32
    assert 0.0 <= ideal.min() and ideal.max() <= 1.0
    clipped = single.max(axis=-1) >= 1.0
    assert clipped.any()
    # where the single exposure is blown, the ideal is darker → negative (over) label there
    _, res = render_ev(ideal, 0.0, linear=rad)
    assert float(res[clipped].mean()) < -0.05
    # the fused ideal keeps more tonal range in the bright part than the single exposure
    assert float(grey(ideal)[clipped].std()) >= float(grey(single)[clipped].std())


def test_hdr_sweep_labels_fall_with_ev() -> None:
    rad = meter(equirect_to_perspective(_panorama(), 0, 45, 70, (64, 48)))
    ideal = mertens_ideal(rad)
    means = [float(render_ev(ideal, ev, linear=rad)[1].mean()) for ev in (-3, -1, 0, 1, 3)]
    assert all(b < a for a, b in zip(means, means[1:]))


def test_reads_openexr_files(tmp_path) -> None:
    OpenEXR = pytest.importorskip("OpenEXR", reason="HDR maps are read with the optional OpenEXR package")
    from exposure_cli.data.hdr import read_exr

    rgb = _panorama(16, 32)
    path = tmp_path / "p.exr"
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": rgb}) as f:
        f.write(str(path))
    back = read_exr(path.read_bytes())
    assert back.shape == rgb.shape and np.allclose(back, rgb, rtol=1e-6)


def test_low_resolution_panoramas_get_smaller_views_not_blurrier_ones() -> None:
    from exposure_cli.data.hdr import MAX_VIEW_UPSAMPLING, VIEW_FOV, VIEW_SIZE, view_size

    assert view_size(1024) == VIEW_SIZE == view_size(8192)  # Blender's 1k panoramas keep the full view size
    w, h = view_size(512)
    assert w < VIEW_SIZE[0] and w % 8 == 0 and h % 8 == 0
    assert w <= MAX_VIEW_UPSAMPLING * 512 * VIEW_FOV / 360 + 8
    assert abs(w / h - VIEW_SIZE[0] / VIEW_SIZE[1]) < 0.05


def test_crops_of_a_small_panorama_are_written_at_the_size_they_report(tmp_path) -> None:
    OpenEXR = pytest.importorskip("OpenEXR", reason="HDR maps are read with the optional OpenEXR package")
    import cv2

    from exposure_cli.data.hdr import VIEWS, view_size, write_hdr_crops

    path = tmp_path / "p.exr"
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"RGB": _panorama(128, 256)}) as f:
        f.write(str(path))
    crops = write_hdr_crops(path.read_bytes(), "pano", tmp_path / "hdr")
    assert len(crops) == len(VIEWS)
    for c in crops:
        assert (c["width"], c["height"]) == view_size(256)
        ideal = cv2.imread(str(tmp_path / c["ideal"]))
        rad = np.load(tmp_path / c["radiance"])
        assert ideal.shape[:2] == rad.shape[:2] == (c["height"], c["width"])
