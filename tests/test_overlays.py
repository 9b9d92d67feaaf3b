"""Overlays a photographer reads at a glance, and maps at the photo's own size.

The overlays are checked on what ``render_overlay`` paints and on the JPEG files ``exposure scan
--overlays`` writes; the maps on the ``.npy`` files ``exposure scan --maps`` writes.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import jpeg_with_exif, photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.report.overlays import (OVER_BGR, UNDER_BGR, legend_layout, overlay_name, render_overlay)
from exposure_cli.report.writers import read_report
from exposure_cli.stats import Thresholds

FAST = ["--model", "baseline", "--no-regions", "-q"]


def grey_photo(h=300, w=400, level=0.45):
    return np.full((h, w, 3), level, np.float32)


def test_overlay_names_keep_the_photos_name():
    assert overlay_name("photo.jpg") == "photo.overlay.jpg"
    assert overlay_name("trip/day 1/IMG_0001.jpg") == "trip/day 1/IMG_0001.overlay.jpg"
    assert overlay_name("photo.png") == "photo.png.overlay.jpg"  # never the same file as photo.jpg's
    assert overlay_name("IMG_1.CR2") == "IMG_1.CR2.overlay.jpg"
    assert overlay_name("photo.JPG") == "photo.JPG.overlay.jpg"  # photo.jpg and photo.JPG can both exist
    assert overlay_name("folder.jpg/inside.jpg") == "folder.jpg/inside.overlay.jpg"
    names = ["a.jpg", "a.png", "a.JPG", "a.jpeg", "b/a.jpg", "a.jpg~2"]
    assert len({overlay_name(n) for n in names}) == len(names)


def test_solid_colours_with_strength_by_severity():
    t = Thresholds(over=0.1, under=0.1, severe=0.3)
    rgb = grey_photo(40, 60)
    r = np.zeros((40, 60), np.float32)
    r[:, 0:10] = -0.12  # mildly over
    r[:, 10:20] = -0.5  # severely over
    r[:, 20:30] = 0.12  # mildly under
    r[:, 30:40] = 0.5  # severely under
    r[:, 40:50] = -0.05  # fine
    out = render_overlay(rgb, r, t, legend=False).astype(int)
    photo = int(round(0.45 * 255))
    assert (out[:, 10:20] == OVER_BGR.astype(int)).all()  # severe: solid, opaque
    assert (out[:, 30:40] == UNDER_BGR.astype(int)).all()
    assert (out[:, 40:] == photo).all()  # fine: untouched
    mild_over, mild_under = out[5, 5], out[5, 25]
    # mild: at least half strength (clearly the warning colour), but the photo still shows through
    assert mild_over[2] > 180 and mild_over[0] < photo and 0 < mild_over[0]
    assert mild_under[0] > 180 and mild_under[2] < photo and 0 < mild_under[2]


def test_blown_white_and_crushed_black_are_always_marked():
    """The model may forgive a blown highlight; a clipping warning does not (Lightroom, darktable)."""
    rgb = grey_photo(30, 30)
    rgb[:10] = 1.0  # blown to white
    rgb[10:20] = 0.0  # crushed to black
    out = render_overlay(rgb, np.zeros((30, 30), np.float32), legend=False).astype(int)
    assert (out[:10] == OVER_BGR.astype(int)).all()
    assert (out[10:20] == UNDER_BGR.astype(int)).all()
    assert (out[20:] == round(0.45 * 255)).all()


def test_zebra_stripes_keep_the_photo_visible_between_them():
    rgb = grey_photo(120, 160)
    r = np.zeros((120, 160), np.float32)
    r[:, :80] = -0.5
    r[:, 80:] = 0.5
    out = render_overlay(rgb, r, legend=False, style="zebra").astype(int)
    photo = round(0.45 * 255)
    left, right = out[:, :80], out[:, 80:]
    painted_left = (left == OVER_BGR.astype(int)).all(axis=2).mean()
    painted_right = (right == UNDER_BGR.astype(int)).all(axis=2).mean()
    assert 0.4 < painted_left < 0.6 and 0.4 < painted_right < 0.6
    assert ((left == photo).all(axis=2) | (left == OVER_BGR.astype(int)).all(axis=2)).all()
    # diagonal: over runs one way, under the other
    stripe = (left == OVER_BGR.astype(int)).all(axis=2)
    assert stripe[0, 1:].tolist() == stripe[1, :-1].tolist()
    stripe = (right == UNDER_BGR.astype(int)).all(axis=2)
    assert stripe[1, 1:].tolist() == stripe[0, :-1].tolist()


def _text_bands(img: np.ndarray, rect) -> list[tuple[int, int]]:
    """Row ranges inside the legend that hold white text pixels."""
    x0, y0, x1, y1 = rect
    white = (img[y0:y1, x0:x1] > 200).all(axis=2).any(axis=1)
    bands, start = [], None
    for y, on in enumerate(white):
        if on and start is None:
            start = y
        if not on and start is not None:
            bands.append((start, y))
            start = None
    if start is not None:
        bands.append((start, len(white)))
    return bands


@pytest.mark.parametrize("w,h", [(320, 240), (1024, 683), (4000, 3000), (6000, 4000), (3000, 4500)])
def test_legend_scales_with_the_photo_and_its_lines_never_overlap(w, h):
    rgb = grey_photo(h, w, 0.3)
    r = np.zeros((h, w), np.float32)
    out = render_overlay(rgb, r)
    layout = legend_layout(w, h)
    assert layout is not None
    bands = _text_bands(out, layout["rect"])
    assert len(bands) == 2, bands  # two lines of text, apart
    gap = bands[1][0] - bands[0][1]
    heights = [b - a for a, b in bands]
    assert gap >= 2 and min(heights) >= 10  # legible: at least 10 px of (solid white) text
    assert min(heights) >= 0.012 * max(w, h)  # and it grows with the photo
    x0, y0, x1, y1 = layout["rect"]
    assert x1 <= w and y1 <= h and (x1 - x0) < 0.6 * w


def test_scan_writes_overlays_named_after_the_photo_with_the_warning_painted(tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "trip" / "bright.jpg", photo_like(240, 320, seed=3, gain=6.0))
    write_image(photos / "trip" / "bright.png", photo_like(240, 320, seed=3, gain=6.0))
    res = CliRunner().invoke(app, ["scan", str(photos), "--out", str(tmp_path / "o"), "--overlays", *FAST],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df, _ = read_report(tmp_path / "o")
    assert sorted(df["overlay_path"]) == ["overlays/trip/bright.overlay.jpg", "overlays/trip/bright.png.overlay.jpg"]
    import cv2

    img = cv2.imread(str(tmp_path / "o" / "overlays" / "trip" / "bright.overlay.jpg")).astype(int)
    red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
    assert red.mean() > 0.3  # a bright photo: most of it in solid red


# ---------------------------------------------------------------------------------------------- maps


def test_maps_are_written_at_the_photos_upright_size(tmp_path):
    """A 2400×1600 JPEG turned upright by EXIF (orientation 6) is 1600 wide and 2400 high; so is its map."""
    photos = tmp_path / "photos"
    photo = photo_like(1600, 2400, seed=5, gain=3.0)
    jpeg_with_exif(photos / "rotated.jpg", photo, orientation=6)
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["scan", str(photos), "--out", str(out), "--maps", *FAST], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df, _ = read_report(out)
    row = df.iloc[0]
    assert (row["width"], row["height"]) == (1600, 2400)
    full = np.load(out / row["map_path"])
    assert full.shape == (2400, 1600) and full.dtype == np.float16
    small_out = tmp_path / "small"
    res = CliRunner().invoke(app, ["scan", str(photos), "--out", str(small_out), "--maps", "--maps-resolution",
                                   "analysis", *FAST], catch_exceptions=False)
    assert res.exit_code == 0
    small = np.load(small_out / df.iloc[0]["map_path"])
    assert small.shape == (row["analysis_height"], row["analysis_width"])
    assert small.shape[0] < 2400 / 3
    # the full map is the small one brought up: same picture, same mean, within upsampling error
    import cv2

    down = cv2.resize(full.astype(np.float32), small.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(down - small.astype(np.float32)).mean() < 0.02
    assert abs(float(full.astype(np.float32).mean()) - float(small.astype(np.float32).mean())) < 0.01


def test_full_size_maps_follow_the_photos_edges():
    """Edge-aware: across a sharp edge in the photo, the full-size map changes sharply too."""
    from exposure_cli.discovery import InputFile
    from exposure_cli.processing import ScanOptions, decode_item, full_size_map

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        img = np.zeros((2000, 3000, 3), np.uint8)
        img[:, :1501] = 250  # a white half and a black half, edge at x = 1501
        img[:, 1501:] = 10
        path = write_image(Path(d) / "edge.png", img)
        item = InputFile(path, "edge.png", Path(d), None)
        decoded = decode_item(item, ScanOptions(), 512)
        small = decoded.image.rgb
        residual = np.where(small.mean(axis=2) > 0.5, -0.6, 0.6).astype(np.float32)  # over / under
        full = full_size_map(decoded, residual)
    assert full.shape == (2000, 3000)
    row = full[1000]
    assert row[1490] < -0.4 and row[1512] > 0.4  # within a few pixels of the edge: already the other side
    bilinear = np.interp(np.arange(3000), (np.arange(small.shape[1]) + 0.5) * 3000 / small.shape[1] - 0.5,
                         residual[residual.shape[0] // 2])
    assert np.abs(row - bilinear)[1480:1522].max() > 0.05  # sharper than plain interpolation


def _blend_every_pixel(rgb, residual, thresholds, style):
    """The overlay as a straightforward blend of every pixel (what render_overlay must equal)."""
    from exposure_cli.report.overlays import CLIPPED, MILD_STRENGTH, OVER_BGR, UNDER_BGR, _stripes

    r = residual.astype(np.float32)
    span_o = max(thresholds.severe - thresholds.over, 1e-3)
    span_u = max(thresholds.severe - thresholds.under, 1e-3)
    over = np.where(-r >= thresholds.over, MILD_STRENGTH + (1 - MILD_STRENGTH) * np.clip((-r - thresholds.over) / span_o, 0, 1), 0.0)
    under = np.where(r >= thresholds.under, MILD_STRENGTH + (1 - MILD_STRENGTH) * np.clip((r - thresholds.under) / span_u, 0, 1), 0.0)
    over = np.where(rgb.min(axis=2) >= CLIPPED, 1.0, over)
    under = np.where(rgb.max(axis=2) <= 1 - CLIPPED, 1.0, under)
    under = np.where(over > 0, 0.0, under).astype(np.float32)
    over = over.astype(np.float32)
    if style == "zebra":
        h, w = r.shape
        period = max(3, round(max(h, w) / 160))
        over, under = over * _stripes(h, w, period, 1), under * _stripes(h, w, period, -1)
    bgr = rgb[..., ::-1].astype(np.float32) * 255.0
    out = bgr * (1 - over - under)[..., None] + OVER_BGR * over[..., None] + UNDER_BGR * under[..., None]
    return np.clip(out, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("style", ["solid", "zebra"])
def test_overlay_blends_only_tinted_pixels_yet_equals_blending_every_pixel(style):
    from exposure_cli.report.overlays import render_overlay

    rng = np.random.default_rng(5)
    h, w = 90, 120
    rgb = rng.uniform(-0.05, 1.05, (h, w, 3)).astype(np.float32)  # outside [0, 1] too: clipped alike
    rgb[:10] = 1.0  # blown
    rgb[-10:] = 0.0  # crushed
    rgb[20:30, :, :] = np.round(rgb[20:30] * 255) / 255 + 0.5 / 255  # exact halves: rounding ties
    residual = np.linspace(-1, 1, h * w, dtype=np.float32).reshape(h, w)
    residual[40:50] = 0.0  # fine band
    thresholds = Thresholds(over=0.1, under=0.15, severe=0.4)
    got = render_overlay(rgb, residual, thresholds, legend=False, style=style)
    assert np.array_equal(got, _blend_every_pixel(rgb, residual, thresholds, style))
