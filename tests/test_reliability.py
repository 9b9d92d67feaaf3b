"""Fault tolerance proven with real processes: SIGKILL at random points, Ctrl-C, a second scan on the same
output, a full and a read-only disk. Each ends with a report holding every input exactly once, with the
values of an uninterrupted scan. See docs/RELIABILITY.md for the figures.

The many-kills loop scales with the long mode (``pytest --long`` or ``EXPOSURE_LONG=1``).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import exposure_cmd, mounted_tmpfs, photo_like, subprocess_env, write_image
from exposure_cli.pipeline import ScanError, scan
from exposure_cli.report import writers
from exposure_cli.outdir import Journal
from exposure_cli.report.writers import read_report

#: Regions on (the default): slower per photo, so kills land among rows, and the masks are covered too.
SCAN_OPTS = ["--model", "baseline", "-q", "--batch-size", "1", "--workers", "1"]
COMPARED = ["status", "error", "width", "height", "mean_residual", "over_pct", "under_pct", "bad_pct",
            "severe_bad_pct"]


def make_photos(folder: Path, n: int, size=(120, 160)) -> Path:
    for i in range(n):
        write_image(folder / f"{i // 25:02d}" / f"{i:04d}.png",
                    photo_like(*size, seed=i, gain=0.2 + (i % 17) / 4))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")  # error rows must survive too
    return folder


def reference_report(photos: Path, out: Path):
    result = scan([photos], out=out, model="baseline", batch_size=1, workers=1)
    return read_report(result.report_path)[0]


def assert_same_report(got, ref) -> None:
    assert list(got["path"]) == list(ref["path"]), "each input exactly once, in order"
    for col in COMPARED:
        a, b = got[col].to_numpy(), ref[col].to_numpy()
        if a.dtype.kind == "f":
            assert np.allclose(a, b, equal_nan=True), col
        else:
            assert list(a) == list(b), col
    for g, r in zip(got["hist"], ref["hist"]):
        assert (g is None and r is None) or list(g) == list(r)


def journal_lines(out: Path) -> tuple[int, bool]:
    """(complete rows in the journal, whether its tail is torn)."""
    path = out / ".exposure" / "journal.jsonl"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, False
    return data.count(b"\n"), bool(data) and not data.endswith(b"\n")


def journal_paths(out: Path) -> list[str]:
    return [r["path"] for r in Journal(out).rows()]


def _default_sigint() -> None:
    # A test run started in the background by a non-interactive shell inherits SIGINT as ignored, and so
    # would the scan; a user's Ctrl-C reaches a foreground process with the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_scan(photos: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(exposure_cmd("scan", str(photos), "--out", str(out), *SCAN_OPTS, *extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                            preexec_fn=_default_sigint)


def wait_for_rows(proc: subprocess.Popen, out: Path, at_least: int, timeout: float = 60.0) -> int:
    """Poll the journal until it holds `at_least` complete rows; return the count (or fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows, _ = journal_lines(out)
        if rows >= at_least:
            return rows
        if proc.poll() is not None:
            pytest.fail(f"the scan ended (exit {proc.returncode}) before {at_least} rows: {proc.stderr.read()}")
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"no {at_least} rows after {timeout} s")


# ------------------------------------------------------------------------------------- SIGKILL loop


def kill_resume_loop(tmp_path: Path, n_photos: int, kills: int, seed: int) -> dict[str, int]:
    photos = make_photos(tmp_path / "photos", n_photos)
    total = n_photos + 1
    ref = reference_report(photos, tmp_path / "ref")
    out = tmp_path / "killed"
    rng = random.Random(seed)
    kills_done = landed = among_rows = torn = terms = 0
    for k in range(kills):
        done, _ = journal_lines(out)
        if total - done < 4:
            break  # keep a margin so every kill lands before the last row
        kills_done += 1
        proc = start_scan(photos, out, *(["--resume"] if out.exists() else []))
        # Spread the kills over what is left: kill after 1..step more rows, at a random moment.
        step = max(1, (total - 3 - done) // (kills - k))
        wait_for_rows(proc, out, done + rng.randint(1, step))
        time.sleep(rng.choice([0, 0, rng.uniform(0, 0.01)]))  # in a row's work or in its journal write
        alive = proc.poll() is None
        report = out / "report.parquet"
        before = report.stat().st_mtime_ns if report.exists() else None
        # Mostly SIGKILL; sometimes SIGTERM, what schedulers send first: the CLI treats it like Ctrl-C
        # and writes the partial report (exit 130).
        sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM])
        terms += sig == signal.SIGTERM
        proc.send_signal(sig)
        proc.wait()
        proc.stderr.close()
        rows, is_torn = journal_lines(out)
        after = report.stat().st_mtime_ns if report.exists() else None
        # Landed mid-scan: the process was still running; a SIGKILL left no new report behind, a SIGTERM
        # stopped it as interrupted (130) with a partial report written.
        if sig == signal.SIGKILL:
            landed += alive and after == before
        else:
            landed += alive and proc.returncode == 130 and after is not None
        among_rows += rows < total  # ...and some photos were still to do
        torn += is_torn
    final = subprocess.run(exposure_cmd("scan", str(photos), "--out", str(out), *SCAN_OPTS, "--resume"),
                           capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert final.returncode == 0, final.stderr
    got, _ = read_report(out / "report.parquet")
    assert_same_report(got, ref)
    # Nothing was done twice: every input has one complete row in the journal (a torn row was redone).
    paths = journal_paths(out)
    assert sorted(paths) == sorted(set(paths)) and len(paths) == total
    assert landed == kills_done, f"only {landed} of {kills_done} kills landed mid-scan"
    return {"kills": kills_done, "sigterm": terms, "landed_mid_scan": landed, "with_photos_left": among_rows,
            "torn_tails": torn}


@pytest.mark.timeout(300)
def test_sigkill_at_random_points_then_resume_loses_and_duplicates_nothing(tmp_path):
    stats = kill_resume_loop(tmp_path, n_photos=30, kills=5, seed=1)
    print(f"kill loop: {stats}")
    assert stats["kills"] == 5


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_many_sigkills_long_mode(tmp_path):
    kills = int(os.environ.get("EXPOSURE_KILLS", "60"))
    stats = kill_resume_loop(tmp_path, n_photos=4 * kills + 10, kills=kills, seed=int(time.time()))
    print(f"kill loop (long): {stats}")
    assert stats["kills"] == kills


# ------------------------------------------------------------------------------------ Ctrl-C, lock


@pytest.mark.timeout(180)
def test_ctrl_c_leaves_a_valid_partial_report_that_resumes(tmp_path):
    # Photos big enough that the scan is still running when the signal lands, even on an idle machine.
    photos = make_photos(tmp_path / "photos", 60, size=(480, 640))
    ref = reference_report(photos, tmp_path / "ref")
    out = tmp_path / "out"
    proc = start_scan(photos, out)
    wait_for_rows(proc, out, 5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    partial, meta = read_report(out / "report.parquet")
    assert 5 <= len(partial) < len(ref) and partial["path"].is_unique
    assert meta["analyzer"]["name"] == "baseline"
    assert_same_report(partial, ref.set_index("path").loc[list(partial["path"])].reset_index())
    done = subprocess.run(exposure_cmd("scan", str(photos), "--out", str(out), *SCAN_OPTS, "--resume"),
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_report(read_report(out)[0], ref)


@pytest.mark.timeout(180)
def test_a_second_scan_on_the_same_output_refuses_and_the_first_completes(tmp_path):
    # Big enough that the first scan outlives the contenders' start-up, even on an idle machine.
    photos = make_photos(tmp_path / "photos", 120, size=(480, 640))
    ref = reference_report(photos, tmp_path / "ref")
    out = tmp_path / "out"
    first = start_scan(photos, out)
    wait_for_rows(first, out, 2)
    # Three contenders at once (plain, --resume, --overwrite), while the first is still writing.
    contenders = [start_scan(photos, out, *extra) for extra in ([], ["--resume"], ["--overwrite"])]
    for c in contenders:
        _, stderr = c.communicate(timeout=120)
        assert c.returncode == 1, (c.args, stderr)
        assert "another scan" in stderr and f"pid {first.pid}" in stderr, stderr
    assert first.poll() is None, "the first scan was still running when the others were refused"
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert_same_report(read_report(out)[0], ref)
    paths = journal_paths(out)
    assert len(paths) == len(set(paths)) == len(ref)


# ------------------------------------------------------------------------------- full / read-only disk


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted in tmp_path (root only; the simulated ENOSPC tests cover the case elsewhere);
    yields (mount point, remount(options) function)."""
    with mounted_tmpfs(tmp_path / "mnt", "1m") as mnt:
        def remount(options: str) -> None:
            subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True, timeout=30)

        yield mnt, remount


def leftover_temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.timeout(300)
def test_full_then_read_only_disk_real_tmpfs(tmp_path, tmpfs):
    mnt, remount = tmpfs
    photos = tmp_path / "photos"
    make_photos(photos, 10, size=(240, 320))
    out = mnt / "out"
    cli = [*SCAN_OPTS, "--batch-size", "2"]
    first = subprocess.run(exposure_cmd("scan", str(photos), "--out", str(out), *cli),
                           capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert first.returncode == 0, first.stderr
    for i in range(10, 40):
        write_image(photos / "more" / f"{i:04d}.png", photo_like(240, 320, seed=i))
    ref = reference_report(photos, tmp_path / "ref")
    # 150 KB residual maps fill the 1 MiB disk after a few photos.
    full = subprocess.run(exposure_cmd("scan", str(photos), "--out", str(out), *cli, "--resume", "--maps"),
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert full.returncode == 1
    message = " ".join(full.stderr.split())
    assert "No space left on device" in message and "--resume" in message, full.stderr
    assert "Traceback" not in full.stderr
    # What was written before the disk filled stays readable: the report (the previous one, or one with
    # the rows finished before the disk filled when the scan's cleanup freed enough room for it), and the
    # journal, which holds every row the report holds.
    previous, _ = read_report(out / "report.parquet")
    journal_rows = list(Journal(out).rows())
    assert len(journal_rows) >= len(previous) >= 11 and (previous["status"] == "ok").sum() >= 10
    assert all(r["status"] in ("ok", "error") for r in journal_rows)
    assert set(previous["path"]) <= {r["path"] for r in journal_rows}
    assert leftover_temporaries(out) == []
    # Read-only: refused with a clear error, the report untouched.
    remount("ro")
    ro = subprocess.run(exposure_cmd("scan", str(photos), "--out", str(out), *cli, "--resume"),
                        capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert ro.returncode == 1 and "Read-only file system" in " ".join(ro.stderr.split()), ro.stderr
    assert "Traceback" not in ro.stderr
    assert len(read_report(out / "report.parquet")[0]) == len(previous)
    # Space again: resume completes with every photo exactly once, values as an uninterrupted scan.
    remount("rw,size=64m")
    done = subprocess.run(exposure_cmd("scan", str(photos), "--out", str(out), *cli, "--resume", "--maps"),
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_report(read_report(out / "report.parquet")[0], ref)


def test_journal_write_failure_simulated_enospc(tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "photos", 8)
    out = tmp_path / "out"
    real_append = Journal.append
    calls = {"n": 0}

    def failing_append(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, rows)

    monkeypatch.setattr(Journal, "append", failing_append)
    with pytest.raises(ScanError, match="No space left on device.*3 rows written so far are safe"):
        scan([photos], out=out, model="baseline", regions=False, batch_size=1, workers=1)
    partial, _ = read_report(out / "report.parquet")  # finalised from the rows that made it
    assert len(partial) == 3 and partial["path"].is_unique
    monkeypatch.setattr(Journal, "append", real_append)
    result = scan([photos], out=out, model="baseline", regions=False, batch_size=1, workers=1, resume=True)
    assert (result.skipped, result.processed) == (3, 6)
    assert len(read_report(out)[0]) == 9


def test_report_write_failure_is_an_error_not_silence(tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "photos", 4)
    out = tmp_path / "out"
    scan([photos], out=out, model="baseline", regions=False)
    write_image(photos / "new.png", photo_like(60, 80))

    def disk_full(rows, fh, *args, **kwargs):
        fh.write(b"partial")  # the report's temporary, opened by the atomic-write helper
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers, "write_rows", disk_full)
    with pytest.raises(ScanError, match="cannot write the report.*No space left.*--resume"):
        scan([photos], out=out, model="baseline", regions=False, resume=True)
    assert len(read_report(out / "report.parquet")[0]) == 5  # the previous report is intact
    assert leftover_temporaries(out) == []
    assert "new.png" in journal_paths(out)  # the new row is safe in the journal


def test_map_write_failure_enospc_stops_the_scan_cleanly(tmp_path, monkeypatch):
    import exposure_cli.processing as pipeline

    photos = make_photos(tmp_path / "photos", 6)

    def disk_full(target, residual, *full_size_of):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "_write_map", disk_full)
    with pytest.raises(ScanError, match="No space left on device.*--resume"):
        scan([photos], out=tmp_path / "out", model="baseline", regions=False, maps=True)
    assert leftover_temporaries(tmp_path / "out") == []


def test_journal_torn_tail_is_ignored_and_redone(tmp_path):
    photos = make_photos(tmp_path / "photos", 5)
    out = tmp_path / "out"
    scan([photos], out=out, model="baseline", regions=False)
    path = out / ".exposure" / "journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a kill mid-write
    (out / "report.parquet").unlink()
    lost = json.loads(lines[-1])["path"]
    result = scan([photos], out=out, model="baseline", regions=False, resume=True)
    assert result.processed == 1 and result.skipped == 5
    df, _ = read_report(out)
    assert len(df) == 6 and lost in set(df["path"])
