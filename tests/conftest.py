"""Shared fixtures: photos and broken files generated on the fly (nothing binary is committed)."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
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


# ------------------------------------------------------------------------------------ long mode / slow


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", default=False,
        help="Run the long reliability loops (many SIGKILLs, long fuzzing); also EXPOSURE_LONG=1.",
    )


def long_mode(config=None) -> bool:
    """True when the long reliability mode is on (``--long`` or ``EXPOSURE_LONG=1``)."""
    import os

    if os.environ.get("EXPOSURE_LONG", "").strip() not in ("", "0"):
        return True
    return bool(config is not None and config.getoption("--long", default=False))


def pytest_configure(config):
    # `--long` sets the variable too, so loop counts read at import time (hypothesis settings) follow it.
    import os

    if config.getoption("--long", default=False):
        os.environ["EXPOSURE_LONG"] = "1"


def pytest_collection_modifyitems(config, items):
    # `slow` tests are the long-mode loops: skipped by default so CI stays fast.
    if long_mode(config):
        return
    skip = pytest.mark.skip(reason="long reliability loop: run with --long or EXPOSURE_LONG=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# ----------------------------------------------------------------------------------- hostile corpus


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares `width`×`height` RGB pixels, with no pixel data behind it."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
            + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG whose SOF0 declares `width`×`height` pixels, with no scan data behind it."""
    return (b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + b"\x03"
            + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01" + b"\xff\xd9")


#: Names that trip up shells, CSV readers and path handling.
AWKWARD_NAMES = ("with space.jpg", "ünïcødé 写真 🌅.jpg", "new\nline.jpg", "-leading-dash.jpg",
                 "--help.jpg", "quote'\"<b>&amp;.jpg", "semi;colon,comma.jpg")


def build_hostile_corpus(root: Path) -> dict[str, str]:
    """Write every hostile input into `root`; return {report key: expected status ("ok"/"error")}.

    Status "either" marks inputs whose outcome depends on the codec build (e.g. animated WebP), where the
    only promise is one row and, on failure, a non-empty error.
    """
    import cv2
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, status: str) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expect[name] = status

    def encode(ext: str, arr: np.ndarray, params=None) -> bytes:
        ok, buf = cv2.imencode(ext, arr, params or [])
        assert ok
        return buf.tobytes()

    photo = photo_like(48, 64, seed=7)
    jpg = encode(".jpg", photo[..., ::-1])
    png = encode(".png", photo[..., ::-1])
    put("zero.jpg", b"", "error")
    put("zero.png", b"", "error")
    put("truncated.jpg", jpg[:300], "error")
    put("truncated.png", png[: len(png) // 3], "error")
    put("random.jpg", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "error")
    put("text.png", b"this is a text file, not a picture\n" * 10, "error")
    put("bomb.png", png_declaring(100_000, 100_000), "error")
    put("bomb.jpg", jpeg_declaring(65_000, 65_000), "error")
    put("one_by_one.png", encode(".png", np.full((1, 1, 3), 200, np.uint8)), "ok")
    put("wide_100000x1.png", encode(".png", np.tile(photo[:1, :, :], (1, 1563, 1))[:, :100_000]), "ok")
    put("tall_1x20000.png", encode(".png", np.tile(photo[:, :1, :], (417, 1, 1))[:20_000]), "ok")
    put("sixteen_bit.tiff",
        encode(".tiff", (photo.astype(np.uint16) * 257)[..., ::-1].copy()), "ok")
    put("grey.png", encode(".png", photo[..., 0]), "ok")
    rgba = np.dstack([photo[..., ::-1], np.linspace(0, 255, 64, dtype=np.uint8)[None, :].repeat(48, 0)])
    put("alpha.png", encode(".png", rgba), "ok")
    pil = Image.fromarray(photo)
    buf = __import__("io").BytesIO()
    pil.convert("P", palette=Image.ADAPTIVE, colors=16).save(buf, format="PNG")
    put("palette.png", buf.getvalue(), "ok")
    buf = __import__("io").BytesIO()
    pil.convert("CMYK").save(buf, format="JPEG")
    put("cmyk.jpg", buf.getvalue(), "ok")
    buf = __import__("io").BytesIO()
    pil.save(buf, format="GIF", save_all=True, append_images=[pil.rotate(90), pil.rotate(180)], loop=0)
    put("animated.gif", buf.getvalue(), "ok")
    buf = __import__("io").BytesIO()
    pil.save(buf, format="WEBP", save_all=True, append_images=[pil.rotate(90)], duration=100)
    put("animated.webp", buf.getvalue(), "either")
    for orientation in range(1, 9):
        name = f"orientation/{orientation}.jpg"
        jpeg_with_exif(root / name, photo, orientation=orientation)
        expect[name] = "ok"
    for name in AWKWARD_NAMES:
        put(f"names/{name}", jpg, "ok")
    # A folder named like a photo is a folder: walked, no row of its own; its photos get rows.
    put("folder.jpg/inside.jpg", jpg, "ok")
    # Symlinks: dangling, a self-loop, a two-link loop and a folder loop (walked once, no row).
    import os

    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    expect["dangling.jpg"] = "error"
    os.symlink("self_loop.jpg", root / "self_loop.jpg")
    expect["self_loop.jpg"] = "error"
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    expect["loop_a.jpg"] = "error"
    expect["loop_b.jpg"] = "error"
    os.symlink("..", root / "orientation" / "up")
    # A FIFO named like a photo must not be opened (opening it would block forever).
    os.mkfifo(root / "fifo.jpg")
    expect["fifo.jpg"] = "error"
    return expect


# --------------------------------------------------------------------------- real-process helpers

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str):
    """A tmpfs of `size` (``64k``, ``1m``) mounted at a new `folder` (root only); skips where it cannot be."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def subprocess_env() -> dict[str, str]:
    """Environment for `python -m exposure_cli` subprocesses: this checkout first, one BLAS thread."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def exposure_cmd(*args: str) -> list[str]:
    """The ``exposure`` command line run by the current interpreter."""
    import sys

    return [sys.executable, "-m", "exposure_cli", *args]


def dng_bytes(scene: np.ndarray, white: int = 4095, orientation: int = 1, make: str = "TestMake") -> bytes:
    """A real, minimal DNG (uncompressed RGGB mosaic, identity colour matrix, neutral white balance) of a
    linear-light `scene` (H×W×3 in [0, 1] of full well); needs tifffile. LibRaw reads it like a camera's."""
    import io

    import tifffile

    h, w = scene.shape[:2]
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2] = scene[0::2, 0::2, 0] * white
    cfa[0::2, 1::2] = scene[0::2, 1::2, 1] * white
    cfa[1::2, 0::2] = scene[1::2, 0::2, 1] * white
    cfa[1::2, 1::2] = scene[1::2, 1::2, 2] * white
    identity = [10000, 10000, 0, 10000, 0, 10000, 0, 10000, 10000, 10000, 0, 10000, 0, 10000, 0, 10000, 10000, 10000]
    tags = [(50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
            (50708, "s", 0, "Test Camera", True),  # UniqueCameraModel
            (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # CFA: RGGB
            (50714, "H", 1, (0,), True), (50717, "H", 1, (white,), True),  # black and white levels
            (50721, "2i", 9, identity, True), (50778, "H", 1, (21,), True),  # ColorMatrix1 under D65
            (50728, "2I", 3, [1, 1, 1, 1, 1, 1], True),  # AsShotNeutral
            (0x0112, "H", 1, (orientation,), True), (0x010F, "s", 0, make, True)]
    buf = io.BytesIO()
    tifffile.imwrite(buf, cfa, photometric=32803, extratags=tags, subfiletype=0, compression=None)
    return buf.getvalue()



# ------------------------------------------------------------------------------- real servers (scale-out)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real ``ray start --head`` cluster on 127.0.0.1 (token auth, 2 CPUs) shared by the whole session and
    stopped at its end (tests/clusters.py). Ray's cold start is slow: keep the tests that need it few."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("the ray extra is not installed (pip install 'exposure-cli[ray]')")
    from clusters import RayCluster

    for attempt in range(3):  # Ray gives its raylet a fixed 30 s to register; a busy machine can miss that
        try:
            cluster = RayCluster(tmp_path_factory.mktemp("ray-cluster")).start()
            break
        except RuntimeError as exc:
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with signature checks on; users ``scanner`` (s3:*) and ``lister``
    (may list, may not read)."""
    pytest.importorskip("moto.server", reason="needs moto's server: pip install 'exposure-cli[test]'")
    from clusters import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        yield server
    finally:
        server.stop()
