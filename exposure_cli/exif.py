"""A small, defensive EXIF reader: orientation and exposure facts from JPEG, TIFF, PNG and WebP.

OpenCV applies EXIF orientation for some formats and not others, and exposes no EXIF values at all, so we
read the TIFF-structured EXIF block ourselves. Every read is bounds-checked; malformed EXIF yields
``ExifFacts()`` (orientation 1), never an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Optional

_TAG_ORIENTATION = 0x0112
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_EXIF_IFD = 0x8769
_TAG_EXPOSURE_TIME = 0x829A
_TAG_F_NUMBER = 0x829D
_TAG_ISO = 0x8827
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_EXPOSURE_BIAS = 0x9204
_TAG_DATETIME = 0x0132

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


@dataclass(frozen=True)
class ExifFacts:
    """Exposure-related EXIF facts; ``None`` where absent."""

    orientation: int = 1
    make: Optional[str] = None
    model: Optional[str] = None
    exposure_time: Optional[float] = None  # seconds
    f_number: Optional[float] = None
    iso: Optional[float] = None
    exposure_bias: Optional[float] = None  # EV
    datetime: Optional[str] = None  # "YYYY:MM:DD HH:MM:SS" as written by the camera

    def columns(self) -> dict[str, object]:
        """Report columns (``exif_*``), orientation excluded."""
        return {f"exif_{f.name}": getattr(self, f.name) for f in fields(self) if f.name != "orientation"}


EXIF_COLUMNS = tuple(f"exif_{f.name}" for f in fields(ExifFacts) if f.name != "orientation")


def read_exif(data: bytes) -> ExifFacts:
    """EXIF facts from the leading bytes of an image file (never raises)."""
    try:
        block = _find_tiff_block(data)
        return _parse_tiff(block) if block else ExifFacts()
    except Exception:  # malformed EXIF must never fail a photo
        return ExifFacts()


def _find_tiff_block(data: bytes) -> bytes | None:
    if data[:2] == b"\xff\xd8":  # JPEG: walk markers to APP1 "Exif\0\0"
        i = 2
        n = len(data)
        while i + 4 <= n and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if marker in (0xDA, 0xD9):  # start of scan / end: no EXIF before image data
                return None
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            seg = data[i + 4 : i + 2 + length]
            if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
                return seg[6:]
            i += 2 + length
        return None
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return data
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        i = 8
        while i + 8 <= len(data):
            length, ctype = struct.unpack(">I4s", data[i : i + 8])
            if ctype == b"eXIf":
                block = data[i + 8 : i + 8 + length]
                return block[6:] if block[:6] == b"Exif\x00\x00" else block
            if ctype in (b"IDAT", b"IEND"):
                return None
            i += 12 + length
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= len(data):
            ctype, length = struct.unpack("<4sI", data[i : i + 8])
            if ctype == b"EXIF":
                block = data[i + 8 : i + 8 + length]
                return block[6:] if block[:6] == b"Exif\x00\x00" else block
            i += 8 + length + (length & 1)
        return None
    return None


def _parse_tiff(block: bytes) -> ExifFacts:
    endian = {b"II": "<", b"MM": ">"}.get(block[:2])
    if endian is None:
        return ExifFacts()
    (ifd0,) = struct.unpack(endian + "I", block[4:8])
    values: dict[int, object] = {}
    exif_ifd = _read_ifd(block, endian, ifd0, values)
    if exif_ifd:
        _read_ifd(block, endian, exif_ifd, values)
    orientation = values.get(_TAG_ORIENTATION)
    orientation = int(orientation) if isinstance(orientation, (int, float)) and 1 <= orientation <= 8 else 1
    iso = values.get(_TAG_ISO)
    return ExifFacts(
        orientation=orientation,
        make=_text(values.get(_TAG_MAKE)),
        model=_text(values.get(_TAG_MODEL)),
        exposure_time=_num(values.get(_TAG_EXPOSURE_TIME)),
        f_number=_num(values.get(_TAG_F_NUMBER)),
        iso=_num(iso),
        exposure_bias=_num(values.get(_TAG_EXPOSURE_BIAS)),
        datetime=_text(values.get(_TAG_DATETIME_ORIGINAL)) or _text(values.get(_TAG_DATETIME)),
    )


def _read_ifd(block: bytes, e: str, offset: int, out: dict[int, object]) -> int:
    if offset <= 0 or offset + 2 > len(block):
        return 0
    (count,) = struct.unpack(e + "H", block[offset : offset + 2])
    exif_ifd = 0
    for k in range(min(count, 512)):
        pos = offset + 2 + 12 * k
        if pos + 12 > len(block):
            break
        tag, typ, n = struct.unpack(e + "HHI", block[pos : pos + 8])
        size = _TYPE_SIZES.get(typ, 0) * n
        if size == 0:
            continue
        raw = block[pos + 8 : pos + 12]
        if size > 4:
            (ptr,) = struct.unpack(e + "I", raw)
            if ptr + size > len(block):
                continue
            raw = block[ptr : ptr + size]
        value = _decode_value(e, typ, n, raw)
        if tag == _TAG_EXIF_IFD and isinstance(value, int):
            exif_ifd = value
        elif value is not None:
            out[tag] = value
    return exif_ifd


def _decode_value(e: str, typ: int, n: int, raw: bytes) -> object:
    if typ == 2:
        return raw[:n].split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
    if typ == 3:
        return struct.unpack(e + "H", raw[:2])[0]
    if typ == 4:
        return struct.unpack(e + "I", raw[:4])[0]
    if typ == 8:
        return struct.unpack(e + "h", raw[:2])[0]
    if typ == 9:
        return struct.unpack(e + "i", raw[:4])[0]
    if typ in (5, 10):
        num, den = struct.unpack(e + ("II" if typ == 5 else "ii"), raw[:8])
        return num / den if den else None
    return None


def _text(v: object) -> Optional[str]:
    return v if isinstance(v, str) and v else None


def _num(v: object) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) else None
