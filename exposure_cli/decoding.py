"""Bytes → an EXIF-oriented RGB float image ready for analysis, or a clear error.

* Large JPEGs are decoded at a reduced scale directly (libjpeg's DCT scaling via ``IMREAD_REDUCED_*``),
  choosing the strongest reduction that keeps the long side at or above the working resolution, so a
  12 MP photo never pays a full decode.
* Other formats are decoded in full (16-bit, grey, alpha, palette and CMYK handled) and then brought down
  with area interpolation to at most ``analysis_long_side``.
* Pixel limits (a decompression-bomb guard) sit where the allocation happens, in layers: before any
  pixel is decoded, the header's declared size is read with Pillow's header reader (plus the fixed
  fields of PNG/JPEG/GIF/BMP/WebP headers, and *every* width and height entry of a TIFF's first
  directory: libtiff uses the first of two, Pillow the last) and the largest reading is checked against
  ``max_pixels``; then the decoders' own limits hold — OpenCV's ``OPENCV_IO_MAX_IMAGE_PIXELS`` (set from
  ``max_pixels`` before OpenCV is imported, see :func:`configure_decoder_limits`), Pillow's
  ``MAX_IMAGE_PIXELS``, libheif's image size as it reports it, LibRaw's sizes before unpacking.
* Files are read through one descriptor opened without blocking and checked with ``fstat`` (a photo
  swapped for a FIFO after discovery is refused, never read), and at most as many bytes as a valid image
  of the declared size can have are read (:func:`max_file_bytes`): a sparse 2 GiB ``.jpg`` is refused by
  its size, not read into memory.
* EXIF orientation is applied by us for every format (OpenCV is told to ignore it, so the behaviour does
  not depend on the codec).
* Alpha is composited over mid-grey (sRGB 0.46, about where a well-exposed photo's mean sits), so
  transparent areas count as neither over- nor under-exposed.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np

from .color import linear_to_srgb
from .exif import ExifFacts, read_exif
from .formats import file_kind

#: Default decompression-bomb guard: 250 megapixels declared in the header.
DEFAULT_MAX_PIXELS = 250_000_000
ALPHA_BACKGROUND = 0.46
#: The most bytes one pixel of a valid image can take in a file: four 32-bit float channels,
#: uncompressed (a codec's worst case for 8- and 16-bit data stays below it).
MAX_BYTES_PER_PIXEL = 16
#: Bytes a valid RAW or HEIF file can take per pixel (16-bit RGB; their sizes are known only to their
#: decoders, so the bound uses ``max_pixels``).
MAX_BYTES_PER_PIXEL_RAW = 6
#: Room for metadata besides the pixels (EXIF, ICC profiles, XMP, embedded previews).
METADATA_ALLOWANCE = 64 << 20
#: Bytes read before the format is known (signature and most headers).
HEAD_BYTES = 1 << 16
_NONBLOCK = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF", "webp": "WEBP", "bmp": "BMP", "gif": "GIF"}


_OPENCV_LIMIT = "OPENCV_IO_MAX_IMAGE_PIXELS"
_opencv_limit_set_by_us: Optional[str] = None


def configure_decoder_limits(max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Give the decoders their own pixel limits (see the module docstring).

    OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when it is imported: this sets it (unless the user
    set it) while OpenCV is not imported yet; after that OpenCV keeps the limit it started with and the
    header check alone applies a lower one. Pillow's ``MAX_IMAGE_PIXELS`` is set to ``max_pixels``.
    """
    import sys

    global _opencv_limit_set_by_us
    if "cv2" not in sys.modules and os.environ.get(_OPENCV_LIMIT) in (None, _opencv_limit_set_by_us):
        _opencv_limit_set_by_us = os.environ[_OPENCV_LIMIT] = str(int(max_pixels))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with scikit-image
        return
    Image.MAX_IMAGE_PIXELS = int(max_pixels)


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
        source_stat: ``fstat`` of the descriptor the file was read through (:func:`decode_file`).
    """

    rgb: np.ndarray
    width: int
    height: int
    format: str
    exif: ExifFacts = field(default_factory=ExifFacts)
    bit_depth: int = 8
    source_stat: Optional[os.stat_result] = field(default=None, repr=False)

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


def declared_size(data: bytes | BinaryIO, fmt: str) -> Optional[tuple[int, int]]:
    """(width, height) as the header declares it, without decoding pixels; None if unknown.

    ``data`` is the file's bytes or an open binary file (only the headers are read from it). The largest
    of every reading is returned: Pillow's header reader, the fixed header fields, and for TIFF every
    ImageWidth / ImageLength entry of the first directory (a file listing them twice must not pass as the
    smaller size).

    Raises:
        DecodeError: Pillow's own decompression-bomb guard refused the header (above twice its
            ``MAX_IMAGE_PIXELS``).
    """
    if hasattr(data, "read"):
        fh = data
        fh.seek(0)
        head = fh.read(HEAD_BYTES)
    else:
        fh, head = io.BytesIO(data), data
    readings = [_pillow_size(fh, fmt), _fixed_size(head, fmt)]
    if fmt == "tiff":
        readings.append(_tiff_size(fh))
    readings = [r for r in readings if r is not None]
    if not readings:
        return None
    return max(readings, key=lambda wh: (wh[0] * wh[1], wh))


_PILLOW_BOMB = re.compile(r"\((\d+) pixels\)")


def _pillow_size(fh: BinaryIO, fmt: str) -> Optional[tuple[int, int]]:
    name = _PIL_FORMATS.get(fmt)
    if name is None:
        return None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    try:
        fh.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the caller compares with max_pixels
            with Image.open(fh, formats=[name]) as im:
                w, h = im.size
    except Image.DecompressionBombError as exc:
        match = _PILLOW_BOMB.search(str(exc))
        declared = f"{int(match.group(1)) / 1e6:,.0f} MP" if match else "more pixels than allowed"
        raise DecodeError(f"image declares {declared}, above Pillow's limit of twice --max-pixels "
                          "(possible decompression bomb; raise --max-pixels to allow it)") from None
    except Exception:  # an unreadable header is the decoder's to judge; its own limit still holds
        return None
    return int(w), int(h)


def _fixed_size(data: bytes, fmt: str) -> Optional[tuple[int, int]]:
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


#: At most this many entries of a TIFF directory are read (a real one has a few dozen).
_TIFF_MAX_ENTRIES = 4096


def _tiff_size(fh: BinaryIO) -> Optional[tuple[int, int]]:
    """The largest width and height among *all* ImageWidth/ImageLength entries of the first directory."""
    try:
        fh.seek(0)
        head = fh.read(8)
        e = "<" if head[:2] == b"II" else ">"
        if head[:2] not in (b"II", b"MM") or struct.unpack(e + "H", head[2:4])[0] != 42:
            return None
        (off,) = struct.unpack(e + "I", head[4:8])
        fh.seek(off)
        (count,) = struct.unpack(e + "H", fh.read(2))
        table = fh.read(12 * min(count, _TIFF_MAX_ENTRIES))
    except (struct.error, OSError, ValueError):
        return None
    widths, heights = [], []
    for pos in range(0, len(table) - 11, 12):
        tag, typ = struct.unpack(e + "HH", table[pos : pos + 4])
        if tag not in (256, 257) or typ not in (3, 4):
            continue
        value = struct.unpack(e + ("H" if typ == 3 else "I"), table[pos + 8 : pos + (10 if typ == 3 else 12)])[0]
        (widths if tag == 256 else heights).append(value)
    return (max(widths), max(heights)) if widths and heights else None


def check_pixels(size: Optional[tuple[int, int]], fmt: str, max_pixels: int) -> None:
    """Refuse a declared size of zero or above ``max_pixels`` (before any pixel is decoded)."""
    if size is None:
        return
    w, h = size
    if w <= 0 or h <= 0:
        raise DecodeError(f"corrupt {fmt.upper()} header: declares a {w}×{h} image")
    if w * h > max_pixels:
        raise DecodeError(
            f"image declares {w}×{h} = {w * h / 1e6:,.0f} MP, above the {max_pixels / 1e6:,.0f} MP limit "
            "(possible decompression bomb; raise --max-pixels to allow it)"
        )


def max_file_bytes(size: Optional[tuple[int, int]], fmt: Optional[str], max_pixels: int) -> int:
    """The largest file a valid image of that declared size (or, unknown, under the limit) can be."""
    if size is not None:
        return size[0] * size[1] * MAX_BYTES_PER_PIXEL + METADATA_ALLOWANCE
    per_pixel = MAX_BYTES_PER_PIXEL_RAW if fmt in (None, "heif", "tiff") else MAX_BYTES_PER_PIXEL
    return max_pixels * per_pixel + METADATA_ALLOWANCE


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
    check_pixels(size, fmt, max_pixels)
    exif = read_exif(data)
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    factor = 1
    if fmt == "jpeg" and size is not None:
        factor = reduction_factor(max(size), target_long_side)
    if factor > 1:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    elif fmt == "jpeg":
        flag = cv2.IMREAD_COLOR
    else:
        flag = cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(buf, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):  # OpenCV's own limit, at the allocation
            limit = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
            raise DecodeError(f"image is above the decoder's limit of {limit / 1e6:,.0f} MP (possible "
                              "decompression bomb; raise --max-pixels to allow it)") from None
        raise DecodeError(f"corrupt {fmt.upper()} file: {str(exc).strip().splitlines()[-1]}") from None
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
    """Read and decode a file; see :func:`decode_bytes` for options.

    The file is opened once, without blocking, and what was opened is checked (``fstat``): a FIFO, device
    or folder put in a photo's place after discovery is refused, never read. At most
    :func:`max_file_bytes` are read. The returned image's ``source_stat`` is that descriptor's ``fstat``.
    """
    path = Path(path)
    data, st = read_image_file(path, options.get("max_pixels", DEFAULT_MAX_PIXELS))
    image = decode_bytes(data, suffix=path.suffix, **options)
    image.source_stat = st
    return image


def read_image_file(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, os.stat_result]:
    """The bytes of an image file, read through one non-blocking descriptor, bounded; and its ``fstat``.

    Raises:
        DecodeError: Not a regular file, unreadable, or larger than a valid image of its declared size.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    except IsADirectoryError:
        raise DecodeError("is a folder, not a file") from None
    except PermissionError:
        raise DecodeError("permission denied: cannot read the file") from None
    except FileNotFoundError:
        raise DecodeError("file not found (removed during the scan?)") from None
    except OSError as exc:
        raise DecodeError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            # swapped in after discovery: reading a FIFO would block this thread for good
            raise DecodeError(f"not a regular file ({file_kind(st.st_mode)})")
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            head = fh.read(HEAD_BYTES)
            if not head:
                raise DecodeError("empty file (0 bytes)")
            fmt = sniff_format(head)
            size = declared_size(fh, fmt) if fmt in _PIL_FORMATS or fmt == "tiff" else None
            if size is not None:
                check_pixels(size, fmt or "image", max_pixels)
            limit = max_file_bytes(size, fmt, max_pixels)
            if st.st_size > limit:
                what = f"a {size[0]}×{size[1]} image" if size else f"an image under the {max_pixels / 1e6:,.0f} MP limit"
                raise DecodeError(f"file is {st.st_size / 1e6:,.0f} MB, larger than {what} can be "
                                  f"({limit / 1e6:,.0f} MB); not read")
            want = min(st.st_size, limit) + 1  # one more, to see a file that grew since fstat
            fh.seek(0)
            chunks, got = [], 0
            while got < want:
                chunk = fh.read(want - got)  # one read() for a regular file under 2 GiB: one buffer
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            if got > limit:
                raise DecodeError(f"file grew past {limit / 1e6:,.0f} MB while being read; not read")
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return data, st
    except DecodeError:
        raise
    except OSError as exc:
        raise DecodeError(f"cannot read the file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def to_rgb_float(img: np.ndarray) -> tuple[np.ndarray, int]:
    """OpenCV BGR/BGRA/grey array of any depth → RGB float32 [0, 1] and its bit depth."""
    import cv2

    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        # the common case in one pass over floats: swap channels on bytes, then scale (already in [0, 1])
        rgb8 = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return np.multiply(rgb8, np.float32(1.0 / 255.0), dtype=np.float32), 8
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
        with rawpy.RawPy() as raw:
            raw.open_buffer(io.BytesIO(data))
            # LibRaw's sizes from the header, before unpack() allocates the sensor data
            h, w = raw.sizes.raw_height or raw.sizes.height, raw.sizes.raw_width or raw.sizes.width
            h, w = max(h, raw.sizes.height), max(w, raw.sizes.width)
            if w * h > max_pixels:
                raise DecodeError(f"image declares {w}×{h}, above the {max_pixels / 1e6:,.0f} MP limit "
                                  "(possible decompression bomb; raise --max-pixels to allow it)")
            raw.unpack()
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


configure_decoder_limits(DEFAULT_MAX_PIXELS)  # OpenCV's limit must be in place before it is imported
