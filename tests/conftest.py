"""Shared fixtures: photos and broken files generated on the fly (nothing binary is committed)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

# Keep the test suite light on this 2-core machine.
try:
    import torch

    torch.set_num_threads(2)
except ImportError:  # pragma: no cover
    pass


def photo_like(h: int = 240, w: int = 320, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """A smooth, textured RGB uint8 image (gradients + blobs + noise) scaled by `gain` in linear light."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.15 + 0.6 * (x / max(w - 1, 1)) * (0.5 + 0.5 * np.sin(y / max(h, 1) * 3.1))
    img = np.stack([base, base * 0.9 + 0.05, base * 0.8 + 0.1], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, max(h, w) / 3)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
        img = img + blob * rng.uniform(-0.2, 0.25, size=3)
    img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)
    lin = np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4) * gain
    lin = np.clip(lin, 0, 1)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return (np.clip(srgb, 0, 1) * 255).round().astype(np.uint8)


def write_image(path: Path, rgb: np.ndarray, params=None) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rgb[..., ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() != ".jpe" else ".jpg", arr, params or [])
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def exif_block(orientation: int = 1, make: str | None = None, iso: int | None = None,
               exposure_time: tuple[int, int] | None = None) -> bytes:
    """A little-endian TIFF/EXIF block with IFD0 (orientation, make) and an EXIF IFD (ISO, exposure)."""
    entries0 = []
    data_area = b""
    exif_entries = []
    # Offsets are computed after layout: header(8) + IFD0.
    n0 = 1 + (1 if make else 0) + 1  # orientation, make, exif pointer
    ifd0_size = 2 + 12 * n0 + 4
    exif_n = (1 if iso else 0) + (1 if exposure_time else 0)
    exif_size = 2 + 12 * exif_n + 4
    data_off = 8 + ifd0_size + exif_size
    entries0.append(struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", orientation, 0))
    if make:
        raw = make.encode() + b"\x00"
        entries0.append(struct.pack("<HHII", 0x010F, 2, len(raw), data_off + len(data_area)))
        data_area += raw + (b"\x00" if len(raw) % 2 else b"")
    entries0.append(struct.pack("<HHII", 0x8769, 4, 1, 8 + ifd0_size))
    if iso:
        exif_entries.append(struct.pack("<HHI", 0x8827, 3, 1) + struct.pack("<HH", iso, 0))
    if exposure_time:
        exif_entries.append(struct.pack("<HHII", 0x829A, 5, 1, data_off + len(data_area)))
        data_area += struct.pack("<II", *exposure_time)
    ifd0 = struct.pack("<H", n0) + b"".join(entries0) + struct.pack("<I", 0)
    exif = struct.pack("<H", exif_n) + b"".join(exif_entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd0 + exif + data_area


def jpeg_with_exif(path: Path, rgb: np.ndarray, **exif) -> Path:
    """Write a JPEG with an APP1 EXIF segment right after SOI."""
    import cv2

    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    payload = b"Exif\x00\x00" + exif_block(**exif)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:2] + app1 + data[2:])
    return path


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A small tree: well, dark and bright photos in two folders, one PNG, plus two broken files."""
    root = tmp_path / "photos"
    write_image(root / "trip" / "well.jpg", photo_like(seed=1))
    write_image(root / "trip" / "dark.jpg", photo_like(seed=2, gain=0.12))
    write_image(root / "trip" / "bright.jpg", photo_like(seed=3, gain=6.0))
    write_image(root / "home" / "flat.png", photo_like(120, 160, seed=4))
    (root / "home" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    return root
