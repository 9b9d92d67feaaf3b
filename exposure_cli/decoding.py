"""Bytes → an EXIF-oriented RGB float image ready for analysis, or a clear error.

* Large JPEGs are decoded at a reduced scale directly (libjpeg's DCT scaling via ``IMREAD_REDUCED_*``),
  choosing the strongest reduction that keeps the long side at or above the working resolution, so a
  12 MP photo never pays a full decode.
* Other formats are decoded in full (16-bit, grey, alpha, palette and CMYK handled) and then brought down
  with area interpolation to at most ``analysis_long_side``.
* Before any pixel is decoded, the header's declared size is checked against ``max_pixels`` (a
  decompression-bomb guard).
* EXIF orientation is applied by us for every format (OpenCV is told to ignore it, so the behaviour does
  not depend on the codec).
* Alpha is composited over mid-grey (sRGB 0.46, about where a well-exposed photo's mean sits), so
  transparent areas count as neither over- nor under-exposed.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .color import linear_to_srgb
from .exif import ExifFacts, read_exif

#: Default decompression-bomb guard: 250 megapixels declared in the header.
DEFAULT_MAX_PIXELS = 250_000_000
ALPHA_BACKGROUND = 0.46


class DecodeError(Exception):
    """A photo that cannot be decoded; the message is user-facing and goes into the report."""


@dataclass
class DecodedImage:
    """A decoded, oriented photo.

    Attributes:
        rgb: float32 H×W×3 in [0, 1] at the analysis resolution.
        width, height: The photo's full size after EXIF orientation (from the header).
        format: Detected container format ("jpeg", "png", …).
        exif: EXIF facts.
        bit_depth: 8 or 16 (32 for float images).
    """

    rgb: np.ndarray
    width: int
    height: int
    format: str
    exif: ExifFacts = field(default_factory=ExifFacts)
    bit_depth: int = 8

    @property
    def scale(self) -> float:
        """Analysis resolution ÷ full resolution (long side)."""
        return max(self.rgb.shape[:2]) / max(self.width, self.height, 1)


def sniff_format(data: bytes) -> Optional[str]:
    """Container format from magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heim", b"heis", b"avif"):
        return "heif"
    return None


def declared_size(data: bytes, fmt: str) -> Optional[tuple[int, int]]:
    """(width, height) as declared by the header, without decoding pixels; None if unknown."""
    try:
        if fmt == "png" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if fmt == "gif":
            return struct.unpack("<HH", data[6:10])
        if fmt == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "webp":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
            if chunk == b"VP8L":
                b = int.from_bytes(data[21:25], "little")
                return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
        if fmt == "tiff":
            return _tiff_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> Optional[tuple[int, int]]:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def _tiff_size(data: bytes) -> Optional[tuple[int, int]]:
    e = "<" if data[:2] == b"II" else ">"
    (off,) = struct.unpack(e + "I", data[4:8])
    (count,) = struct.unpack(e + "H", data[off : off + 2])
    w = h = None
    for k in range(count):
        pos = off + 2 + 12 * k
        tag, typ = struct.unpack(e + "HH", data[pos : pos + 4])
        val = struct.unpack(e + ("H" if typ == 3 else "I"), data[pos + 8 : pos + (10 if typ == 3 else 12)])[0]
        if tag == 256:
            w = val
        elif tag == 257:
            h = val
    return (w, h) if w and h else None


def reduction_factor(long_side: int, target_long_side: int) -> int:
    """Strongest JPEG DCT reduction (1, 2, 4, 8) keeping the long side ≥ target."""
    for factor in (8, 4, 2):
        if long_side // factor >= target_long_side:
            return factor
    return 1


def decode_bytes(
    data: bytes,
    *,
    target_long_side: int = 512,
    analysis_long_side: int = 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    suffix: str = "",
) -> DecodedImage:
    """Decode one photo from its bytes.

    Args:
        data: The whole file.
        target_long_side: The analyzer's working resolution; JPEGs are DCT-reduced down to it, no further.
        analysis_long_side: Images larger than this (after reduced decode) are area-resized to it.
        max_pixels: Refuse images whose header declares more pixels than this.
        suffix: The file's extension, to pick a decoder for formats without magic bytes (RAW).

    Raises:
        DecodeError: With a message fit for the report's ``error`` column.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    fmt = sniff_format(data)
    suffix = suffix.lower()
    from .formats import HEIF_EXTENSIONS, RAW_EXTENSIONS

    if fmt == "heif" or (fmt is None and suffix in HEIF_EXTENSIONS):
        return _decode_heif(data, analysis_long_side, max_pixels)
    if suffix in RAW_EXTENSIONS and fmt in (None, "tiff"):
        return _decode_raw(data, analysis_long_side, max_pixels)
    if fmt is None:
        head = data[:16]
        kind = "text" if all(32 <= c < 127 or c in (9, 10, 13) for c in head) else "unrecognised binary data"
        raise DecodeError(f"not an image: {kind} (no known image signature)")
    size = declared_size(data, fmt)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0:
            raise DecodeError(f"corrupt {fmt.upper()} header: declares a {w}×{h} image")
        if w * h > max_pixels:
            raise DecodeError(
                f"image declares {w}×{h} = {w * h / 1e6:,.0f} MP, above the {max_pixels / 1e6:,.0f} MP limit "
                "(possible decompression bomb; raise --max-pixels to allow it)"
            )
    exif = read_exif(data)
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    factor = 1
    if fmt == "jpeg" and size is not None:
        factor = reduction_factor(max(size), target_long_side)
    if factor > 1:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        img = cv2.imdecode(buf, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    elif fmt == "jpeg":
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None or img.size == 0:
        raise DecodeError(f"corrupt or truncated {fmt.upper()} file (the decoder could not read it)")
    full_w, full_h = size if size is not None else (img.shape[1] * factor, img.shape[0] * factor)
    # Shrink in the codec's own dtype first: converting a 200 MP image to float32 before resizing
    # would need several gigabytes per photo (and one per decode thread).
    img = limit_long_side(img, analysis_long_side)
    rgb, depth = to_rgb_float(img)
    rgb = apply_orientation(rgb, exif.orientation)
    if exif.orientation in (5, 6, 7, 8):
        full_w, full_h = full_h, full_w
    rgb = limit_long_side(rgb, analysis_long_side)
    return DecodedImage(rgb=rgb, width=int(full_w), height=int(full_h), format=fmt, exif=exif, bit_depth=depth)


def decode_file(path: str | Path, **options) -> DecodedImage:
    """Read and decode a file; see :func:`decode_bytes` for options."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DecodeError("is a folder, not a file") from None
    except PermissionError:
        raise DecodeError("permission denied: cannot read the file") from None
    except FileNotFoundError:
        raise DecodeError("file not found (removed during the scan?)") from None
    except OSError as exc:
        raise DecodeError(f"cannot read the file: {exc.strerror or exc}") from None
    return decode_bytes(data, suffix=path.suffix, **options)


def to_rgb_float(img: np.ndarray) -> tuple[np.ndarray, int]:
    """OpenCV BGR/BGRA/grey array of any depth → RGB float32 [0, 1] and its bit depth."""
    import cv2

    if img.dtype == np.uint8:
        scale, depth = 1.0 / 255.0, 8
    elif img.dtype == np.uint16:
        scale, depth = 1.0 / 65535.0, 16
    elif img.dtype in (np.float32, np.float64):
        scale, depth = 1.0, 32
    else:
        info = np.iinfo(img.dtype)
        scale, depth = 1.0 / float(info.max), info.bits
    f = img.astype(np.float32) * np.float32(scale)
    if f.ndim == 2:
        f = f[..., None]
    channels = f.shape[2]
    if channels == 1:
        rgb = np.repeat(f, 3, axis=2)
    elif channels == 2:  # grey + alpha
        rgb = np.repeat(_composite(f[..., :1], f[..., 1:2]), 3, axis=2)
    elif channels == 3:
        rgb = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
    else:
        rgb = cv2.cvtColor(_composite(f[..., :3], f[..., 3:4]), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32), depth


def _composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    alpha = np.clip(alpha, 0.0, 1.0)
    return colour * alpha + np.float32(ALPHA_BACKGROUND) * (1.0 - alpha)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) so the image is displayed upright."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = np.swapaxes(img, 0, 1)
    elif orientation == 6:
        img = np.swapaxes(img, 0, 1)[:, ::-1]
    elif orientation == 7:
        img = np.swapaxes(img, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        img = np.swapaxes(img, 0, 1)[::-1]
    return np.ascontiguousarray(img)


def limit_long_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Area-downscale so that max(H, W) ≤ long_side (never upscales)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= long_side:
        return rgb
    import cv2

    s = long_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _decode_heif(data: bytes, analysis_long_side: int, max_pixels: int) -> DecodedImage:
    try:
        import pillow_heif
    except ImportError:
        raise DecodeError(
            "HEIC/HEIF support is not installed: pip install 'exposure-cli[heif]'"
        ) from None
    try:
        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
        w, h = heif.size
        if w * h > max_pixels:
            raise DecodeError(f"image declares {w}×{h}, above the {max_pixels / 1e6:,.0f} MP limit")
        arr = np.asarray(heif)
    except DecodeError:
        raise
    except Exception as exc:  # the codec's own errors become a row
        raise DecodeError(f"corrupt HEIF file: {exc}") from None
    rgb = arr.astype(np.float32) / (65535.0 if arr.dtype == np.uint16 else 255.0)
    rgb = np.clip(rgb[..., :3], 0, 1)
    return DecodedImage(limit_long_side(rgb, analysis_long_side), w, h, "heif", _heif_exif(heif),
                        16 if arr.dtype == np.uint16 else 8)


def _heif_exif(heif: object) -> ExifFacts:
    """Exposure facts from a HEIF's EXIF item. Orientation is reported as 1: libheif has already turned
    the image upright with the container's own transforms (irot/imir), which the HEIF standard makes
    authoritative over the EXIF tag — applying the tag again would rotate twice."""
    block = (getattr(heif, "info", None) or {}).get("exif") or b""
    if block[:6] == b"Exif\x00\x00":
        block = block[6:]
    return _exif_already_upright(block) if block else ExifFacts()


def _exif_already_upright(data: bytes) -> ExifFacts:
    """EXIF facts of a file whose decoder has already applied the orientation (orientation reported as 1)."""
    return dataclasses.replace(read_exif(data), orientation=1)


def _decode_raw(data: bytes, analysis_long_side: int, max_pixels: int) -> DecodedImage:
    try:
        import rawpy
    except ImportError:
        raise DecodeError("camera RAW support is not installed: pip install 'exposure-cli[raw]'") from None
    import io

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            h, w = raw.sizes.height, raw.sizes.width
            if w * h > max_pixels:
                raise DecodeError(f"image declares {w}×{h}, above the {max_pixels / 1e6:,.0f} MP limit")
            # Linear output, no auto-brightening: LibRaw's default rescales every photo so that 1 % of its
            # pixels clip, which would make a RAW shot two stops under look exactly like a good one.
            arr = raw.postprocess(output_bps=16, use_camera_wb=True, no_auto_bright=True, gamma=(1.0, 1.0),
                                  half_size=max(w, h) > 2 * analysis_long_side)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"corrupt or unsupported RAW file: {exc}") from None
    rgb = linear_to_srgb(np.clip(arr.astype(np.float32) / 65535.0, 0, 1))
    # TIFF-based RAW (DNG, NEF, CR2, ARW, …) carries EXIF; LibRaw has already applied the orientation
    exif = _exif_already_upright(data)
    return DecodedImage(limit_long_side(rgb, analysis_long_side), arr.shape[1], arr.shape[0], "raw", exif, 16)
