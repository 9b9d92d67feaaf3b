import struct

import cv2
import numpy as np
import pytest

from conftest import jpeg_with_exif, photo_like, write_image
from exposure_cli.decoding import DecodeError, apply_orientation, decode_bytes, decode_file, reduction_factor
from exposure_cli.exif import read_exif


def asym_image() -> np.ndarray:
    """An image whose orientation is visible: a red block in the top-left corner only."""
    img = np.full((60, 100, 3), 128, np.uint8)
    img[:20, :30] = (255, 0, 0)
    return img


# The upright image (as displayed) for every EXIF orientation, built independently with OpenCV ops.
def displayed(stored: np.ndarray, orientation: int) -> np.ndarray:
    ops = {
        1: lambda a: a,
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.transpose(a),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    return ops[orientation](stored)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    stored = asym_image()
    path = jpeg_with_exif(tmp_path / f"o{orientation}.jpg", stored, orientation=orientation)
    img = decode_file(path)
    expected = displayed(stored, orientation).astype(np.float32) / 255
    assert img.rgb.shape == expected.shape
    assert np.abs(img.rgb - expected).mean() < 0.03
    assert (img.width, img.height) == (expected.shape[1], expected.shape[0])


def test_exif_exposure_facts(tmp_path):
    path = jpeg_with_exif(tmp_path / "e.jpg", asym_image(), orientation=1, make="Acme", iso=400,
                          exposure_time=(1, 250))
    facts = read_exif(path.read_bytes())
    assert facts.make == "Acme"
    assert facts.iso == 400
    assert facts.exposure_time == pytest.approx(1 / 250)


def test_malformed_exif_never_raises():
    assert read_exif(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff").orientation == 1


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    big = np.tile(photo_like(300, 400), (8, 8, 1))  # 2400 × 3200
    path = write_image(tmp_path / "big.jpg", big)
    img = decode_file(path, target_long_side=512, analysis_long_side=1024)
    assert (img.width, img.height) == (3200, 2400)
    assert max(img.rgb.shape[:2]) == 800  # DCT scale 1/4: long side ≥ 512, not a full decode
    assert reduction_factor(3200, 512) == 4 and reduction_factor(600, 512) == 1


def test_png_is_area_resized_to_analysis_size(tmp_path):
    path = write_image(tmp_path / "p.png", photo_like(700, 1400))
    img = decode_file(path, analysis_long_side=700)
    assert img.rgb.shape[:2] == (350, 700)


def test_sixteen_bit_grey_alpha_palette(tmp_path):
    sixteen = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    p16 = tmp_path / "g16.png"
    cv2.imwrite(str(p16), sixteen)
    img = decode_file(p16)
    assert img.bit_depth == 16 and img.rgb.shape == (64, 64, 3)
    assert img.rgb[-1, -1, 0] == pytest.approx(1.0, abs=1e-4)
    tif = tmp_path / "c16.tiff"
    cv2.imwrite(str(tif), np.dstack([sixteen] * 3))
    assert decode_file(tif).bit_depth == 16
    bgra = np.zeros((10, 10, 4), np.uint8)
    bgra[..., 3] = 0  # fully transparent black → mid-grey, neither over nor under
    pa = tmp_path / "a.png"
    cv2.imwrite(str(pa), bgra)
    assert decode_file(pa).rgb.mean() == pytest.approx(0.46, abs=0.01)


def test_palette_png_and_gif(tmp_path):
    from PIL import Image

    img = Image.fromarray(photo_like(40, 50)).convert("P", palette=Image.ADAPTIVE, colors=16)
    img.save(tmp_path / "pal.png")
    img.save(tmp_path / "anim.gif", save_all=True, append_images=[img.rotate(90)])
    assert decode_file(tmp_path / "pal.png").rgb.shape == (40, 50, 3)
    assert decode_file(tmp_path / "anim.gif").rgb.shape == (40, 50, 3)


def test_cmyk_jpeg(tmp_path):
    from PIL import Image

    Image.fromarray(photo_like(40, 50)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    img = decode_file(tmp_path / "cmyk.jpg")
    assert img.rgb.shape == (40, 50, 3) and 0.05 < img.rgb.mean() < 0.95


@pytest.mark.parametrize("data,needle", [
    (b"", "empty file"),
    (b"hello, I am text", "not an image"),
    (bytes(range(256)) * 4, "not an image"),
])
def test_non_images_are_clear_errors(data, needle):
    with pytest.raises(DecodeError, match=needle):
        decode_bytes(data)


def test_truncated_files_are_errors(tmp_path):
    for ext in (".jpg", ".png"):
        path = write_image(tmp_path / f"t{ext}", photo_like())
        data = path.read_bytes()
        with pytest.raises(DecodeError, match="corrupt or truncated"):
            decode_bytes(data[: len(data) // 3] if ext == ".png" else data[:200])


def test_decompression_bomb_refused_before_decoding():
    # A PNG header declaring 100 000 × 100 000 pixels, with no pixel data behind it.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00" * 4
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_bytes(png)
    sof = b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60000, 60000) + b"\x03" + b"\x00" * 9
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_bytes(sof)


def test_heif_without_extra_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(DecodeError, match=r"exposure-cli\[heif\]"):
        decode_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 32)


def _heic(rgb: np.ndarray, orientation: int = 1, iso: int | None = None, make: str | None = None) -> bytes:
    """A real HEIC file (HEVC-coded by libheif through pillow-heif) with an EXIF block."""
    import io

    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs the optional heif extra")
    from PIL import Image

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = orientation
    if make:
        exif[0x010F] = make
    if iso:
        exif.get_ifd(0x8769)[0x8827] = iso
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="HEIF", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation, turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_heic_decodes_upright_once_with_its_exposure_facts(orientation, turn):
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = 200
    rgb[:32, :, 2] = 255
    rgb[40:60, 60:90] = (30, 160, 60)
    d = decode_bytes(_heic(rgb, orientation, iso=800, make="TestCam"), suffix=".heic")
    upright = np.rot90(rgb, turn).astype(np.float32) / 255
    assert d.format == "heif" and d.rgb.shape == upright.shape
    assert np.abs(d.rgb - upright).mean() < 0.01  # lossy HEVC; a wrong turn is off by ~0.66
    assert (d.width, d.height) == (upright.shape[1], upright.shape[0])
    assert d.exif.iso == 800 and d.exif.make == "TestCam" and d.exif.orientation == 1


def test_heic_photos_become_report_rows(tmp_path):
    from exposure_cli import scan
    from exposure_cli.report.writers import read_report

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dark.heic").write_bytes(_heic(np.full((48, 64, 3), 20, np.uint8), iso=3200))
    (tmp_path / "in" / "broken.heic").write_bytes(_heic(np.full((48, 64, 3), 20, np.uint8))[:300])
    result = scan([tmp_path / "in"], out=tmp_path / "out", model="baseline", regions=False)
    by = read_report(result.report_path)[0].set_index("path")
    assert by.loc["dark.heic", "status"] == "ok" and by.loc["dark.heic", "exif_iso"] == 3200
    assert by.loc["dark.heic", "width"] == 64 and by.loc["dark.heic", "height"] == 48
    assert by.loc["broken.heic", "status"] == "error" and "HEIF" in by.loc["broken.heic", "error"]


def test_raw_keeps_the_exposure_it_was_shot_at():
    pytest.importorskip("rawpy", reason="RAW needs the optional raw extra")
    pytest.importorskip("tifffile")
    from conftest import dng_bytes

    from exposure_cli.color import linear_to_srgb

    means = []
    for level in (0.02, 0.1, 0.4):  # share of full well: about −4.5, −2.2 and −0.2 EV from clipping
        d = decode_bytes(dng_bytes(np.full((64, 96, 3), level, np.float32)), suffix=".dng")
        assert d.format == "raw" and d.bit_depth == 16
        # linear light → sRGB, nothing else: no auto-brightening that would make every RAW look well exposed
        assert abs(float(d.rgb.mean()) - float(linear_to_srgb(np.float32(level)))) < 0.01
        means.append(float(d.rgb.mean()))
    assert means == sorted(means) and means[2] - means[0] > 0.4


def test_raw_is_turned_upright_once_and_keeps_its_exif():
    pytest.importorskip("rawpy", reason="RAW needs the optional raw extra")
    pytest.importorskip("tifffile")
    from conftest import dng_bytes

    scene = np.full((64, 96, 3), 0.05, np.float32)
    scene[:, :48] = 0.5  # bright left half
    d = decode_bytes(dng_bytes(scene, orientation=6, make="RawCam"), suffix=".dng")
    assert d.rgb.shape == (96, 64, 3) and (d.width, d.height) == (64, 96)
    # turned 90° clockwise: the bright left half is now the top half
    assert d.rgb[:40].mean() > 0.6 and d.rgb[56:].mean() < 0.35
    assert d.exif.make == "RawCam" and d.exif.orientation == 1


def test_apply_orientation_round_trip():
    a = np.arange(12).reshape(3, 4)
    assert apply_orientation(a, 6).shape == (4, 3)
    assert np.array_equal(apply_orientation(apply_orientation(a, 6), 8), a)
