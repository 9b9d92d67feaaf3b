"""Real HDR radiance maps: perspective crops, single-exposure renders, and well-exposed fused ideals.

An equirectangular radiance map (OpenEXR, linear light) holds a real scene's full dynamic range: sun,
windows and deep shadows in one file. We cut perspective views out of it (a virtual camera), meter each
view like a camera's average metering (mean log luminance → 18 % grey), and make its *ideal* by fusing a
wide bracket of renders with Mertens exposure fusion (OpenCV): detail in the highlights from the short
exposures, in the shadows from the long ones — what a careful photographer's HDR would show. A single
exposure of the same view then differs from the ideal exactly where one exposure cannot hold the scene.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..color import grey, linear_to_srgb

#: Bracket fused into the ideal (stops around the metered exposure).
BRACKET_EV = (-4.0, -2.0, 0.0, 2.0, 4.0)
#: Metering target: the mean log luminance of a view maps to this linear value (18 % grey).
KEY = 0.18
#: Views cut from each panorama: (yaw, pitch) in degrees, field of view, output size.
VIEWS = tuple((yaw, pitch) for pitch in (0.0, 15.0) for yaw in range(0, 360, 60))
VIEW_FOV = 80.0
VIEW_SIZE = (384, 256)
#: A view holds at most this many output pixels per panorama pixel (low-resolution panoramas get smaller views
#: instead of blurry upsampled ones).
MAX_VIEW_UPSAMPLING = 2.0


def view_size(pano_width: int, fov: float = VIEW_FOV, size: tuple[int, int] = VIEW_SIZE) -> tuple[int, int]:
    """Output size of a view: ``size``, shrunk (3:2 kept, multiples of 8) when the panorama has fewer pixels
    across the field of view than ``size[0] / MAX_VIEW_UPSAMPLING``."""
    native = pano_width * fov / 360.0
    scale = min(1.0, MAX_VIEW_UPSAMPLING * native / size[0])
    if scale >= 1.0:
        return size
    return (max(8, int(round(size[0] * scale / 8)) * 8), max(8, int(round(size[1] * scale / 8)) * 8))


def is_hdr_path(path: str) -> bool:
    return path.lower().endswith((".exr", ".hdr"))


def read_exr(data: bytes) -> np.ndarray:
    """Decode an OpenEXR file's RGB channels → float32 H×W×3 linear radiance.

    Needs the ``OpenEXR`` package (``pip install OpenEXR``): OpenCV's wheels ship without EXR support,
    and HDR files use compressions (e.g. DWAB) that are not worth re-implementing.
    """
    try:
        import OpenEXR  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading HDR radiance maps needs the OpenEXR package: pip install OpenEXR") from exc
    fd, name = tempfile.mkstemp(suffix=".exr")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        with OpenEXR.File(name) as f:
            channels = f.channels()
            if "RGB" in channels:
                rgb = np.asarray(channels["RGB"].pixels, dtype=np.float32)
            else:
                rgb = np.stack([np.asarray(channels[c].pixels, np.float32) for c in ("R", "G", "B")], -1)
    finally:
        os.unlink(name)
    return np.maximum(np.nan_to_num(rgb, nan=0.0, posinf=0.0), 0.0)


def equirect_to_perspective(
    pano: np.ndarray, yaw: float, pitch: float, fov: float, size: tuple[int, int]
) -> np.ndarray:
    """A pinhole view (horizontal field of view ``fov`` degrees, ``size`` = (w, h)) of an equirect map."""
    import cv2

    w, h = size
    H, W = pano.shape[:2]
    f = 0.5 * w / np.tan(np.radians(fov) / 2)
    xs = np.arange(w, dtype=np.float32) - (w - 1) / 2
    ys = np.arange(h, dtype=np.float32) - (h - 1) / 2
    x, y = np.meshgrid(xs, ys)
    d = np.stack([x, -y, np.full_like(x, f)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    cp, sp = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
    cy, sy = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    # pitch about x, then yaw about the vertical axis
    dy = d[..., 1] * cp + d[..., 2] * sp
    dz = -d[..., 1] * sp + d[..., 2] * cp
    dx = d[..., 0] * cy + dz * sy
    dz = -d[..., 0] * sy + dz * cy
    lon = np.arctan2(dx, dz)
    lat = np.arcsin(np.clip(dy, -1, 1))
    map_x = ((lon / (2 * np.pi) + 0.5) * W - 0.5).astype(np.float32)
    map_y = ((0.5 - lat / np.pi) * H - 0.5).astype(np.float32)
    return cv2.remap(pano.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def meter(radiance: np.ndarray, key: float = KEY) -> np.ndarray:
    """Scale radiance like a camera's average metering: mean log luminance → ``key``; 1.0 = full well."""
    lum = grey(radiance)
    log_mean = float(np.exp(np.mean(np.log(lum + 1e-6))))
    return (radiance * (key / max(log_mean, 1e-9))).astype(np.float32)


def render_single(radiance: np.ndarray, ev: float) -> np.ndarray:
    """One 8-bit sRGB exposure of metered radiance at ``ev`` stops (sensor clips at 1.0)."""
    srgb = linear_to_srgb(radiance * np.float32(2.0**ev))
    return np.round(srgb * 255.0).astype(np.uint8)


def mertens_ideal(radiance: np.ndarray, bracket: Sequence[float] = BRACKET_EV) -> np.ndarray:
    """Well-exposed ideal: Mertens exposure fusion of a bracket of single exposures → float32 RGB [0, 1]."""
    import cv2

    stack = [render_single(radiance, ev) for ev in bracket]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # OpenCV's parallel float sums differ by a grey level between runs otherwise
    try:
        fused = cv2.createMergeMertens().process(stack)
    finally:
        cv2.setNumThreads(threads)
    return np.clip(fused, 0.0, 1.0).astype(np.float32)


def write_hdr_crops(data: bytes, hdr_id: str, out_dir: Path) -> list[dict[str, Any]]:
    """Cut the fixed views out of one EXR panorama; write metered radiance (.npy, float16) + ideal (.png)."""
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pano = read_exr(data)
    size = view_size(pano.shape[1])
    crops = []
    for yaw, pitch in VIEWS:
        cid = f"{hdr_id}__y{int(yaw):03d}p{int(pitch):02d}"
        rad_path, ideal_path = out_dir / f"{cid}.radiance.npy", out_dir / f"{cid}.ideal.png"
        if not (rad_path.exists() and ideal_path.exists()):
            rad = meter(equirect_to_perspective(pano, yaw, pitch, VIEW_FOV, size))
            # float16 holds up to 65504: enough for metered radiance (the sun saturates it harmlessly)
            np.save(rad_path, np.minimum(rad, 60000.0).astype(np.float16))
            ideal = mertens_ideal(rad)
            cv2.imwrite(str(ideal_path), cv2.cvtColor(np.round(ideal * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        crops.append({"id": cid, "radiance": f"hdr/{rad_path.name}", "ideal": f"hdr/{ideal_path.name}",
                      "width": size[0], "height": size[1]})
    return crops


__all__ = [
    "BRACKET_EV",
    "equirect_to_perspective",
    "is_hdr_path",
    "meter",
    "mertens_ideal",
    "read_exr",
    "render_single",
    "view_size",
    "write_hdr_crops",
]
