"""Hostile inputs: every file in a generated corpus of broken, huge, odd and unreadable inputs gets exactly
one report row, a clear error where it failed, and the scan neither crashes, hangs nor balloons in memory.

The corpus is built in tmp_path by ``conftest.build_hostile_corpus`` (nothing binary is committed).
See docs/RELIABILITY.md for the table of inputs and results.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import (AWKWARD_NAMES, build_hostile_corpus, exposure_cmd, jpeg_with_exif, long_mode, photo_like,
                      subprocess_env, write_image)
from exposure_cli.cli import app
from exposure_cli.decoding import DecodedImage, DecodeError, decode_bytes
from exposure_cli.exif import ExifFacts, read_exif
from exposure_cli.pipeline import scan
from exposure_cli.report.writers import read_report

FAST = ["--model", "baseline", "--no-regions"]
runner = CliRunner()

#: Error text expected (as a substring) for the inputs whose failure has one specific cause.
ERROR_NEEDLES = {
    "zero.jpg": "empty file",
    "zero.png": "empty file",
    "truncated.jpg": "corrupt or truncated",
    "truncated.png": "corrupt or truncated",
    "random.jpg": "not an image",
    "text.png": "not an image: text",
    "bomb.png": "decompression bomb",
    "bomb.jpg": "decompression bomb",
    "dangling.jpg": "broken symlink",
    "self_loop.jpg": "symlink loop",
    "loop_a.jpg": "symlink loop",
    "loop_b.jpg": "symlink loop",
    "fifo.jpg": "FIFO",
}


def valid_png_bomb(width: int, height: int) -> bytes:
    """A *valid* grey-filled RGB PNG of width×height: a few hundred KB that decode to width×height×3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (width * 3)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    return root, build_hostile_corpus(root)


@pytest.mark.timeout(120)
def test_every_hostile_input_gets_exactly_one_honest_row(hostile, tmp_path):
    root, expect = hostile
    started = time.perf_counter()
    # Regions on (the default): face/saliency code must survive 1×1 and 100 000×1 photos too.
    result = scan([root], out=tmp_path / "out", model="baseline", file_timeout=30)
    elapsed = time.perf_counter() - started
    df, _ = read_report(result.report_path)
    assert sorted(df["path"]) == sorted(expect), "one row per input, no more, no less"
    assert df["path"].is_unique
    by = df.set_index("path")
    for key, status in expect.items():
        row = by.loc[key]
        if status == "either":
            assert row["status"] in ("ok", "error")
            status = row["status"]
        assert row["status"] == status, (key, row["error"])
        if status == "error":
            assert isinstance(row["error"], str) and len(row["error"]) > 10, key
        else:
            assert row["width"] > 0 and row["height"] > 0 and np.isfinite(row["bad_pct"]), key
    for key, needle in ERROR_NEEDLES.items():
        assert needle in by.loc[key, "error"], (key, by.loc[key, "error"])
    # A folder named like a photo is walked; it has no row of its own.
    assert "folder.jpg" not in by.index and by.loc["folder.jpg/inside.jpg", "status"] == "ok"
    assert (by.loc["wide_100000x1.png", "width"], by.loc["wide_100000x1.png", "height"]) == (100_000, 1)
    for o in range(1, 9):  # orientations 5-8 swap width and height
        w, h = by.loc[f"orientation/{o}.jpg", ["width", "height"]]
        assert (w, h) == ((48, 64) if o >= 5 else (64, 48)), o
    assert by.loc["sixteen_bit.tiff", "bit_depth"] == 16
    assert result.total == len(expect) and result.errors == sum(1 for s in by["status"] if s == "error")
    assert elapsed < 60, f"the hostile corpus took {elapsed:.1f} s"


@pytest.mark.timeout(300)
def test_extreme_shapes_through_the_default_model(hostile, tmp_path):
    """The shipped model (not only the baseline) survives 1×1, 100 000×1 and 1×20 000 photos."""
    from exposure_cli.weights import shipped_weights_dir

    if shipped_weights_dir() is None:
        pytest.skip("no weights shipped with this checkout")
    root, _ = hostile
    shapes = ["one_by_one.png", "wide_100000x1.png", "tall_1x20000.png", "alpha.png", "sixteen_bit.tiff"]
    result = scan([root / name for name in shapes], out=tmp_path / "out", device="cpu")
    df, meta = read_report(result.report_path)
    assert meta["analyzer"]["name"] == "eat"
    assert sorted(df["path"]) == sorted(shapes) and (df["status"] == "ok").all(), df[["path", "error"]]
    assert np.isfinite(df["mean_residual"]).all()


def test_hostile_corpus_through_the_cli_in_every_format(hostile, tmp_path):
    root, expect = hostile
    for fmt, name in (("csv", "report.csv"), ("jsonl", "report.jsonl"), ("parquet", "report.parquet")):
        out = tmp_path / fmt
        res = runner.invoke(app, ["scan", str(root), "--out", str(out), "--format", fmt, *FAST, "-q"],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
        df, _ = read_report(out / name)
        # Names with newlines, quotes, commas, semicolons and emoji survive every format exactly.
        assert sorted(df["path"]) == sorted(expect), fmt
        assert set(df["status"]) == {"ok", "error"}
    # Streamed to stdout (no output folder, no journal): the same rows.
    import io

    import pandas as pd

    res = runner.invoke(app, ["scan", str(root), "--out", "-", "--format", "jsonl", *FAST, "-q"],
                        catch_exceptions=False)
    assert res.exit_code == 0
    streamed = pd.read_json(io.StringIO(res.stdout), lines=True, dtype={"path": str})
    assert sorted(streamed["path"]) == sorted(expect)


def test_awkward_names_passed_explicitly_on_the_command_line(tmp_path, monkeypatch):
    folder = tmp_path / "names"
    for name in AWKWARD_NAMES:
        write_image(folder / name, photo_like(40, 50, seed=3))
    monkeypatch.chdir(folder)
    # "--" ends the options, so names starting with dashes are paths, as with every POSIX tool.
    res = runner.invoke(app, ["scan", "--out", str(tmp_path / "out"), *FAST, "-q", "--", *AWKWARD_NAMES],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df, _ = read_report(tmp_path / "out")
    assert sorted(df["path"]) == sorted(AWKWARD_NAMES)
    assert (df["status"] == "ok").all()


def test_a_folder_named_like_a_photo_given_explicitly_is_walked(tmp_path):
    folder = tmp_path / "x.jpg"
    write_image(folder / "a.jpg", photo_like(30, 40))
    result = scan([folder], out=tmp_path / "out", model="baseline", regions=False)
    df, _ = read_report(result.report_path)
    assert list(df["path"]) == ["a.jpg"] and df["status"][0] == "ok"


def test_fifo_given_explicitly_is_a_row_and_never_opened(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    started = time.perf_counter()
    result = scan([fifo], out=tmp_path / "out", model="baseline", regions=False, file_timeout=30)
    assert time.perf_counter() - started < 20  # opening a FIFO for reading would block forever
    df, _ = read_report(result.report_path)
    assert list(df["status"]) == ["error"] and "FIFO" in df["error"][0]


# ------------------------------------------------------------------------------------ permissions


def _drop_read_override() -> None:
    """preexec_fn: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so even root obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    pr_capbset_drop, dac_override, dac_read_search = 24, 1, 2
    for cap in (dac_override, dac_read_search):  # from the bounding set, or exec would give them back
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~((1 << dac_override) | (1 << dac_read_search)) & 0xFFFFFFFF
    for name in ("effective", "permitted", "inheritable"):
        setattr(data[0], name, getattr(data[0], name) & keep)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _unprivileged_run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd` so that mode 000 really denies reading: as is for a normal user; for root (as in this
    container, where chmod 000 stops nothing) with the two capabilities that bypass file modes dropped."""
    preexec = _drop_read_override if os.geteuid() == 0 else None
    return subprocess.run(cmd, preexec_fn=preexec, **kwargs)


@pytest.mark.skipif(sys.platform != "linux", reason="capability handling is Linux-specific")
def test_unreadable_file_and_folder_are_rows_not_crashes(tmp_path):
    root = tmp_path / "photos"
    write_image(root / "ok.jpg", photo_like(30, 40))
    locked = write_image(root / "locked.jpg", photo_like(30, 40))
    write_image(root / "locked_dir" / "inside.jpg", photo_like(30, 40))
    locked.chmod(0)
    (root / "locked_dir").chmod(0)
    try:
        probe = _unprivileged_run(["cat", str(locked)], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("cannot make a file unreadable here (no way to drop the read override)")
        out = tmp_path / "out"
        proc = _unprivileged_run(exposure_cmd("scan", str(root), "--out", str(out), *FAST, "-q"),
                                 capture_output=True, text=True, env=subprocess_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
    finally:
        locked.chmod(stat.S_IRUSR | stat.S_IWUSR)
        (root / "locked_dir").chmod(stat.S_IRWXU)
    df, _ = read_report(out)
    by = df.set_index("path")
    assert sorted(by.index) == ["locked.jpg", "locked_dir", "ok.jpg"]
    assert by.loc["ok.jpg", "status"] == "ok"
    assert "permission denied" in by.loc["locked.jpg", "error"].lower()
    assert "permission denied" in by.loc["locked_dir", "error"].lower()


# --------------------------------------------------------------------------------- time and memory


@pytest.mark.timeout(60)
def test_file_timeout_abandons_a_decoder_that_never_returns(tmp_path, monkeypatch):
    import exposure_cli.processing as pipeline

    for i in range(5):
        write_image(tmp_path / "in" / f"{i}.jpg", photo_like(40, 50, seed=i))
    real = pipeline.decode_file
    release = threading.Event()

    def stuck_on_two(path, **options):
        if Path(path).name == "2.jpg":
            release.wait(120)  # "forever" as far as the scan is concerned
        return real(path, **options)

    monkeypatch.setattr(pipeline, "decode_file", stuck_on_two)
    started = time.perf_counter()
    try:
        result = scan([tmp_path / "in"], out=tmp_path / "out", model="baseline", regions=False,
                      file_timeout=0.5)
    finally:
        elapsed = time.perf_counter() - started
        release.set()
    assert elapsed < 15, f"the scan waited {elapsed:.1f} s for an abandoned decode"
    df, _ = read_report(result.report_path)
    by = df.set_index("path")
    assert len(by) == 5 and (by.drop(index="2.jpg")["status"] == "ok").all()
    assert by.loc["2.jpg", "status"] == "error" and "longer than 0.5 s" in by.loc["2.jpg", "error"]


LIBRARY_CALLER = """
import sys, threading, time
from pathlib import Path
import exposure_cli.processing as pipeline
from exposure_cli import scan
real = pipeline.decode_file
def stuck(path, **options):
    if Path(path).name == "2.jpg":
        threading.Event().wait(600)  # a decoder that never returns
    return real(path, **options)
pipeline.decode_file = stuck
result = scan([sys.argv[1]], out=sys.argv[2], model="baseline", regions=False, file_timeout=0.5)
print("rows", result.total, "errors", result.errors, flush=True)
"""


@pytest.mark.timeout(120)
def test_a_library_caller_exits_although_a_decode_is_stuck_for_good(tmp_path):
    for i in range(4):
        write_image(tmp_path / "in" / f"{i}.jpg", photo_like(40, 50, seed=i))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LIBRARY_CALLER, str(tmp_path / "in"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=100, env=subprocess_env())
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    assert "rows 4 errors 1" in proc.stdout
    assert elapsed < 60, f"the interpreter waited {elapsed:.0f} s at exit for the stuck decode thread"


@pytest.mark.timeout(120)
def test_file_timeout_on_a_really_slow_decode(tmp_path):
    # A 64 MP PNG (a 200 KB file) takes far longer than 0.1 s to inflate: a real slow input, not a mock.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "huge.png").write_bytes(valid_png_bomb(8000, 8000))
    write_image(tmp_path / "in" / "small.jpg", photo_like(30, 40))
    res = runner.invoke(app, ["scan", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *FAST, "-q",
                              "--file-timeout", "0.1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    by = read_report(tmp_path / "out")[0].set_index("path")
    assert by.loc["huge.png", "status"] == "error" and "longer than 0.1 s" in by.loc["huge.png", "error"]
    assert by.loc["small.jpg", "status"] == "ok"


#: Starts the measured command from a small process and prints its exit code and ru_maxrss (KiB).
_RSS_RELAY = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _peak_rss_mb_of(cmd: list[str], **kwargs) -> tuple[int, float, str]:
    """Run `cmd`; return (exit code, peak resident memory in MB of that process alone, stderr).

    Linux carries a parent's high-water RSS into a child across fork/vfork + exec, so a child of this
    (large, late in a test session) pytest process would report pytest's peak. A small relay process starts
    the command instead: the command then inherits only the relay's few MB.
    """
    proc = subprocess.run([sys.executable, "-c", _RSS_RELAY, *cmd], capture_output=True, text=True, **kwargs)
    code, maxrss_kib = proc.stdout.split()[-2:]
    return int(code), int(maxrss_kib) / 1024, proc.stderr  # ru_maxrss is in KiB on Linux


@pytest.mark.timeout(180)
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ")
def test_peak_memory_of_a_hostile_scan_is_bounded(hostile, tmp_path):
    root, _ = hostile
    corpus = tmp_path / "corpus"
    corpus.symlink_to(root, target_is_directory=True)
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    # Valid, under the default 250 MP guard: 64 MP of pixels behind 200 KB of file. Decoded at 8 bits this
    # is 192 MB; converted to float32 before resizing (as before the fix) it peaked at ~2.4 GB.
    (bombs / "valid_64mp.png").write_bytes(valid_png_bomb(8000, 8000))
    code, peak_mb, stderr = _peak_rss_mb_of(
        exposure_cmd("scan", str(root), str(bombs), "--out", str(tmp_path / "out"), *FAST, "-q",
                     "--workers", "2"),
        env=subprocess_env())
    assert code == 0, stderr
    by = read_report(tmp_path / "out")[0].set_index("path")
    assert by.loc["bombs/valid_64mp.png", "status"] == "ok"
    assert by.loc["bombs/valid_64mp.png", "width"] == 8000
    print(f"peak RSS of the hostile scan: {peak_mb:.0f} MB")
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB"


# ------------------------------------------------------------------------------ decoder fuzzing


def _seed_files() -> list[bytes]:
    import cv2

    photo = photo_like(24, 32, seed=5)[..., ::-1]
    seeds = [cv2.imencode(ext, photo)[1].tobytes() for ext in (".jpg", ".png", ".tiff", ".webp", ".bmp")]
    grey16 = (photo[..., 0].astype(np.uint16) * 257)
    seeds.append(cv2.imencode(".png", grey16)[1].tobytes())
    return seeds


SEEDS = _seed_files()
FUZZ_EXAMPLES = 2000 if long_mode() else 150


@st.composite
def mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:  # scribble on the header, where sizes and offsets live
            hpos = draw(st.integers(0, min(40, len(data) - 1)))
            data[hpos] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=not long_mode())
@given(mutated_image())
def test_fuzzed_images_decode_or_fail_with_decode_error(data):
    try:
        img = decode_bytes(data, max_pixels=4_000_000)
    except DecodeError as exc:
        assert str(exc)
        return
    assert isinstance(img, DecodedImage)
    assert img.rgb.dtype == np.float32 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert np.isfinite(img.rgb).all() and 0 <= img.rgb.min() and img.rgb.max() <= 1


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=not long_mode())
@given(st.binary(max_size=512), st.sampled_from([b"\xff\xd8\xff\xe1", b"II*\x00", b"MM\x00*",
                                                 b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b""]))
def test_fuzzed_exif_never_raises(body, prefix):
    facts = read_exif(prefix + body)
    assert isinstance(facts, ExifFacts) and 1 <= facts.orientation <= 8


def test_exif_with_hostile_strings_and_offsets(tmp_path):
    # EXIF text is user data: control characters and markup come through as text, never crash.
    path = jpeg_with_exif(tmp_path / "e.jpg", photo_like(20, 30), orientation=9, make="<b>\x01\n'\"")
    facts = read_exif(path.read_bytes())
    assert facts.orientation == 1  # out-of-range orientation is ignored
    assert facts.make == "<b>\x01\n'\""
