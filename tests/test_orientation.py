"""EXIF orientation and exposure facts read from hand-built TIFF blocks, and apply_orientation pixel by pixel.

The blocks are packed here with ``struct`` (both byte orders, every value type the reader decodes, values
inline and by offset, broken pointers and counts), so each branch of ``exif._parse_tiff``, ``_read_ifd`` and
``_decode_value`` has a case whose expected facts are written out by hand. ``tools/mutation.py orientation``
runs these tests against mutants of those functions.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from exposure_cli.decoding import apply_orientation
from exposure_cli.exif import ExifFacts, _decode_value, _parse_tiff, _read_ifd, read_exif

ORIENTATION, MAKE, MODEL, EXIF_IFD = 0x0112, 0x010F, 0x0110, 0x8769
EXPOSURE_TIME, F_NUMBER, ISO, DATETIME_ORIGINAL, EXPOSURE_BIAS, DATETIME = (
    0x829A, 0x829D, 0x8827, 0x9003, 0x9204, 0x0132)
SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def pack_value(e: str, typ: int, value) -> tuple[int, bytes]:
    """(count, bytes) of one value of TIFF type `typ`."""
    if typ == 2:
        raw = value if isinstance(value, bytes) else value.encode() + b"\x00"
        return len(raw), raw
    if typ in (5, 10):
        fmt = "II" if typ == 5 else "ii"
        return 1, struct.pack(e + fmt, *value)
    fmt = {3: "H", 4: "I", 8: "h", 9: "i"}[typ]
    return 1, struct.pack(e + fmt, value)


def tiff(entries0, entries_exif=None, endian: str = "<", count_override: int | None = None) -> bytes:
    """A TIFF block: header, IFD0 (with a pointer to the EXIF IFD when `entries_exif` is given), the EXIF
    IFD, then the out-of-line values. Entries are (tag, type, value) or (tag, type, count, raw bytes)."""
    e = endian
    entries0 = list(entries0)
    if entries_exif is not None:
        entries0.append((EXIF_IFD, 4, 0))  # pointer patched below
    ifd0_at = 8
    ifd0_len = 2 + 12 * len(entries0) + 4
    exif_at = ifd0_at + ifd0_len
    exif_len = (2 + 12 * len(entries_exif) + 4) if entries_exif is not None else 0
    data_at = exif_at + exif_len
    data = bytearray()

    def ifd(entries, count_field):
        out = bytearray(struct.pack(e + "H", count_field))
        for entry in entries:
            if len(entry) == 4:
                tag, typ, count, raw = entry
            else:
                tag, typ, value = entry
                if tag == EXIF_IFD and entries_exif is not None:
                    value = exif_at
                count, raw = pack_value(e, typ, value)
            if len(raw) > 4:
                pointer = data_at + len(data)
                data.extend(raw)
                field = struct.pack(e + "I", pointer)
            else:
                field = raw.ljust(4, b"\x00")
            out += struct.pack(e + "HHI", tag, typ, count) + field
        return bytes(out + b"\x00\x00\x00\x00")

    head = (b"II*\x00" if e == "<" else b"MM\x00*") + struct.pack(e + "I", ifd0_at)
    first = ifd(entries0, len(entries0) if count_override is None else count_override)
    second = ifd(entries_exif, len(entries_exif)) if entries_exif is not None else b""
    return head + first + second + bytes(data)


FULL_IFD0 = [(ORIENTATION, 3, 6), (MAKE, 2, "Acme Cameras"), (MODEL, 2, "X1"), (DATETIME, 2, "2020:01:02 03:04:05")]
FULL_EXIF = [(EXPOSURE_TIME, 5, (1, 250)), (F_NUMBER, 5, (28, 10)), (ISO, 3, 1600),
             (DATETIME_ORIGINAL, 2, "2019:12:31 23:59:58"), (EXPOSURE_BIAS, 10, (-2, 3))]
FULL_FACTS = ExifFacts(orientation=6, make="Acme Cameras", model="X1", exposure_time=1 / 250, f_number=2.8,
                       iso=1600.0, exposure_bias=-2 / 3, datetime="2019:12:31 23:59:58")


@pytest.mark.parametrize("endian", ["<", ">"])
def test_every_fact_in_both_byte_orders(endian):
    block = tiff(FULL_IFD0, FULL_EXIF, endian)
    facts = _parse_tiff(block)
    assert facts == FULL_FACTS
    assert isinstance(facts.iso, float) and isinstance(facts.orientation, int)
    # the same block behind a JPEG APP1 segment
    payload = b"Exif\x00\x00" + block
    jpeg = b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + b"\xff\xd9"
    assert read_exif(jpeg) == FULL_FACTS


def test_datetime_falls_back_to_ifd0_and_short_strings_are_inline():
    block = tiff([(MAKE, 2, "Ab"), (DATETIME, 2, "2020:01:02 03:04:05")], [(ISO, 3, 100)])
    facts = _parse_tiff(block)
    assert facts.make == "Ab"  # 3 bytes with the NUL: stored in the entry itself
    assert facts.datetime == "2020:01:02 03:04:05"
    assert facts.iso == 100.0 and facts.orientation == 1 and facts.model is None


@pytest.mark.parametrize("typ, value, expected", [
    (3, 8, 8), (4, 7, 7), (8, 5, 5), (9, 2, 2), (5, (6, 1), 6), (10, (3, 1), 3),
    (3, 1, 1), (3, 0, 1), (3, 9, 1), (4, 70000, 1), (8, -6, 1), (5, (15, 2), 7), (5, (17, 2), 1), (5, (1, 2), 1), (5, (1, 0), 1),
])
def test_orientation_of_every_numeric_type_and_out_of_range_values(typ, value, expected):
    for endian in "<>":
        assert _parse_tiff(tiff([(ORIENTATION, typ, value)], endian=endian)).orientation == expected


def test_orientation_as_text_is_ignored():
    assert _parse_tiff(tiff([(ORIENTATION, 2, "6")])).orientation == 1


def test_unknown_byte_order_and_no_exif_ifd():
    assert _parse_tiff(b"XX*\x00" + tiff([(ORIENTATION, 3, 6)])[4:]) == ExifFacts()
    assert _parse_tiff(tiff([(ORIENTATION, 3, 3)])) == ExifFacts(orientation=3)


def test_signed_and_rational_values_decode_with_their_sign():
    for e in "<>":
        assert _decode_value(e, 8, 1, struct.pack(e + "h", -3)) == -3
        assert _decode_value(e, 9, 1, struct.pack(e + "i", -70000)) == -70000
        assert _decode_value(e, 3, 1, struct.pack(e + "H", 65535)) == 65535
        assert _decode_value(e, 4, 1, struct.pack(e + "I", 4_000_000_000)) == 4_000_000_000
        assert _decode_value(e, 5, 1, struct.pack(e + "II", 3, 4)) == 0.75
        assert _decode_value(e, 10, 1, struct.pack(e + "ii", -3, 4)) == -0.75
        assert _decode_value(e, 10, 1, struct.pack(e + "ii", 3, 0)) is None
        assert _decode_value(e, 5, 1, struct.pack(e + "II", 3, 0)) is None
    for typ in (1, 6, 7, 11, 12, 0, 13):
        assert _decode_value("<", typ, 1, b"\x01\x00\x00\x00\x00\x00\x00\x00") is None


def test_text_is_cut_at_count_and_nul_stripped_and_undecodable_bytes_replaced():
    assert _decode_value("<", 2, 2, b"AbCD") == "Ab"
    assert _decode_value("<", 2, 8, b" Acme \x00xyz") == "Acme"
    assert _decode_value("<", 2, 3, b"\xffA\x00") == "\ufffdA"
    assert _parse_tiff(tiff([(MAKE, 2, 1, b"\x00")])).make is None  # an empty string is no make


def test_read_ifd_returns_the_exif_pointer_and_fills_values():
    block = tiff(FULL_IFD0, FULL_EXIF)
    out: dict[int, object] = {}
    pointer = _read_ifd(block, "<", 8, out)
    assert pointer == 8 + 2 + 12 * 5 + 4
    assert out == {ORIENTATION: 6, MAKE: "Acme Cameras", MODEL: "X1", DATETIME: "2020:01:02 03:04:05"}
    assert EXIF_IFD not in out
    exif: dict[int, object] = {}
    assert _read_ifd(block, "<", pointer, exif) == 0
    assert exif[ISO] == 1600 and exif[EXPOSURE_BIAS] == pytest.approx(-2 / 3)


def test_exif_pointer_of_the_wrong_type_is_ignored():
    block = tiff([(ORIENTATION, 3, 8), (EXIF_IFD, 5, (40, 1))])
    out: dict[int, object] = {}
    assert _read_ifd(block, "<", 8, out) == 0
    assert out == {ORIENTATION: 8, EXIF_IFD: 40.0}
    assert _parse_tiff(block).orientation == 8


@pytest.mark.parametrize("offset", [0, -1])
def test_read_ifd_refuses_offsets_outside_the_block(offset):
    block = tiff([(ORIENTATION, 3, 6)])
    out: dict[int, object] = {}
    assert _read_ifd(block, "<", offset, out) == 0 and out == {}


def test_read_ifd_at_the_end_of_the_block():
    block = tiff([(ORIENTATION, 3, 6)])
    out: dict[int, object] = {}
    assert _read_ifd(block, "<", len(block) - 1, out) == 0 and out == {}
    # exactly two bytes left: a count is read, no entry fits
    assert _read_ifd(block[:10] + b"", "<", 8, out) == 0 and out == {}
    assert _read_ifd(block[:8] + b"\x01\x00" + b"\x00" * 11, "<", 8, out) == 0 and out == {}
    # the entry ends exactly at the end of the block: it is read
    exact = block[:8 + 2 + 12]
    assert _read_ifd(exact, "<", 8, out) == 0 and out == {ORIENTATION: 6}


def test_an_entry_past_the_end_stops_the_walk_but_keeps_earlier_entries():
    block = tiff([(ORIENTATION, 3, 3), (ISO, 3, 200)], count_override=3)[:8 + 2 + 24]
    out: dict[int, object] = {}
    _read_ifd(block, "<", 8, out)
    assert out == {ORIENTATION: 3, ISO: 200}


def test_bad_pointers_and_types_skip_the_entry_and_go_on():
    entries = [
        (MAKE, 2, 20, struct.pack("<I", 10_000)),  # value pointer past the end
        (MODEL, 99, 1, b"\x01\x00\x00\x00"),  # unknown type: no size
        (F_NUMBER, 5, 0, b"\x00\x00\x00\x00"),  # count 0
        (ORIENTATION, 3, 5),
    ]
    block = tiff(entries)
    out: dict[int, object] = {}
    _read_ifd(block, "<", 8, out)
    assert out == {ORIENTATION: 5}


def test_a_value_ending_exactly_at_the_end_of_the_block_is_read():
    block = tiff([(ORIENTATION, 3, 6), (MODEL, 2, "Exactly")])
    assert block.endswith(b"Exactly\x00")
    assert _parse_tiff(block).model == "Exactly"
    assert _parse_tiff(block[:-1]).model is None  # one byte short: skipped
    assert _parse_tiff(block[:-1]).orientation == 6


def test_at_most_512_entries_are_read():
    filler = [(0x9000 + k, 3, 1) for k in range(511)]
    last = tiff(filler + [(ORIENTATION, 3, 6)])
    assert _parse_tiff(last).orientation == 6  # entry 512
    past = tiff(filler + [(ISO, 3, 5), (ORIENTATION, 3, 6)])
    assert _parse_tiff(past).orientation == 1  # entry 513 is never read
    assert _parse_tiff(past).iso == 5.0


def test_malformed_blocks_never_raise():
    assert read_exif(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff") == ExifFacts()
    assert read_exif(b"II*\x00") == ExifFacts()
    assert read_exif(b"") == ExifFacts()


# ------------------------------------------------------------------------------------- apply_orientation

STORED = np.arange(2 * 3).reshape(2, 3)  # [[0 1 2], [3 4 5]]
# What a viewer shows for each EXIF orientation (written out by hand from the EXIF 2.3 table).
SHOWN = {
    1: [[0, 1, 2], [3, 4, 5]],
    2: [[2, 1, 0], [5, 4, 3]],
    3: [[5, 4, 3], [2, 1, 0]],
    4: [[3, 4, 5], [0, 1, 2]],
    5: [[0, 3], [1, 4], [2, 5]],
    6: [[3, 0], [4, 1], [5, 2]],
    7: [[5, 2], [4, 1], [3, 0]],
    8: [[2, 5], [1, 4], [0, 3]],
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_the_exif_table(orientation):
    out = apply_orientation(STORED, orientation)
    assert out.tolist() == SHOWN[orientation]
    assert out.flags.c_contiguous
    colour = np.stack([STORED, STORED + 10, STORED + 20], axis=-1)
    turned = apply_orientation(colour, orientation)
    assert turned[..., 0].tolist() == SHOWN[orientation] and turned[..., 2].tolist() == (np.array(SHOWN[orientation]) + 20).tolist()
    assert turned.flags.c_contiguous


@pytest.mark.parametrize("orientation", [0, 9, -1])
def test_apply_orientation_leaves_unknown_values_alone(orientation):
    assert apply_orientation(STORED, orientation).tolist() == SHOWN[1]


def test_apply_orientation_makes_views_contiguous():
    view = np.arange(12).reshape(3, 4)[:, ::-1]
    assert not view.flags.c_contiguous
    out = apply_orientation(view, 1)
    assert out.flags.c_contiguous and out.tolist() == view.tolist()


# -------------------------------------------------------------- cases added for the mutation survivors


def test_an_ifd_offset_of_zero_means_no_ifd_but_one_is_read():
    """IFD0 at offset 0 would read the header as an IFD; it means "no IFD". Offset 1 is read as given."""
    entry = struct.pack("<HHI", ORIENTATION, 3, 1) + struct.pack("<H", 6) + b"\x00\x00"
    at_zero = b"II*\x00" + struct.pack("<I", 0) + b"\x00" * 6 + entry  # entry 1 counted from offset 0
    assert _parse_tiff(at_zero).orientation == 1
    at_one = b"II*\x00" + struct.pack("<I", 1) + b"\x00" * 7 + entry  # entry 1 counted from offset 1
    assert _parse_tiff(at_one).orientation == 6


def test_an_entry_count_above_32767_is_unsigned_and_capped():
    block = bytearray(tiff([(ORIENTATION, 3, 6)]))
    block[8:10] = struct.pack("<H", 0x8001)  # a corrupt count: the first entries are still read
    block += b"\x00" * 12 * 4
    assert _parse_tiff(bytes(block)).orientation == 6


def test_text_ends_at_the_first_nul():
    assert _decode_value("<", 2, 10, b"Acme\x00xyz\x00ab") == "Acme"


def test_arrays_of_numbers_give_their_first_value():
    """A LONG, SLONG or RATIONAL tag with two values (stored by offset) reads as its first value."""
    for e in "<>":
        for typ, fmt, values, first in ((4, "II", (7, 9), 7), (9, "ii", (-7, 9), -7), (3, "HH", (5, 9), 5),
                                        (8, "hh", (-5, 9), -5), (5, "IIII", (1, 4, 9, 1), 0.25),
                                        (10, "iiii", (-1, 4, 9, 1), -0.25)):
            raw = struct.pack(e + fmt, *values)
            assert _decode_value(e, typ, 2, raw) == first
            block = tiff([(ORIENTATION, 3, 6), (ISO, typ, 2, raw)], endian=e)
            facts = _parse_tiff(block)
            assert facts.iso == first and facts.orientation == 6


def test_unsigned_rationals_above_two_to_the_31():
    for e in "<>":
        assert _decode_value(e, 5, 1, struct.pack(e + "II", 3_000_000_000, 1_000_000_000)) == 3.0
        assert _decode_value(e, 5, 1, struct.pack(e + "II", 1, 4_000_000_000)) == 2.5e-10
        assert _decode_value(e, 10, 1, struct.pack(e + "ii", -2, 4)) == -0.5


def test_inline_text_is_cut_at_its_count_not_at_the_four_byte_field():
    """A two-byte text without its NUL, stored inline: the field's other two bytes are padding, not text."""
    block = tiff([(ORIENTATION, 3, 6), (MAKE, 2, 2, b"ABCD")])
    out: dict[int, object] = {}
    _read_ifd(block, "<", 8, out)
    assert out == {ORIENTATION: 6, MAKE: "AB"}


@pytest.mark.parametrize("endian", ["<", ">"])
def test_a_value_pointer_above_two_to_the_31_is_past_the_block(endian):
    """Value offsets are unsigned: 2**32 − 16 points far past the block (the entry is skipped), not 16 bytes
    before its end."""
    model = "A-model-name-long-enough"
    block = tiff([(ORIENTATION, 3, 6), (MAKE, 2, 8, struct.pack(endian + "I", 2**32 - 16)), (MODEL, 2, model)],
                 endian=endian)
    assert len(block) > 16 and block.endswith(model.encode() + b"\x00")
    out: dict[int, object] = {}
    _read_ifd(block, endian, 8, out)
    assert out == {ORIENTATION: 6, MODEL: model}
