import math

import numpy as np
import pandas as pd
import pytest

from exposure_cli.report.schema import ReportFormat, base_columns
from exposure_cli.outdir import Journal, finalize
from exposure_cli.report.writers import read_report, write_report
from exposure_cli.stats import Thresholds, image_stats


def sample_rows():
    r = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    ok = {"path": "a/ok.jpg", "status": "ok", "error": None, "width": 8, "height": 8, "exif_iso": 100.0,
          "analyzer": "baseline", **image_stats(r, {}, Thresholds())}
    bad = {"path": "z/bad.jpg", "status": "error", "error": "corrupt or truncated JPEG file, \"quoted\", comma"}
    uni = {"path": "ü/naïve name,\nnewline.jpg", "status": "ok", "error": None, **image_stats(r * 0, {}, Thresholds())}
    return [bad, ok, uni]


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_writer_round_trips_the_same_columns(tmp_path, fmt):
    journal = Journal(tmp_path)
    journal.open()
    journal.append(sample_rows())
    journal.close()
    path = finalize(tmp_path, fmt, base_columns(), {"thresholds": {"over": 0.1}})
    df, meta = read_report(path)
    assert list(df.columns) == base_columns()
    assert meta["thresholds"]["over"] == 0.1
    assert list(df["path"]) == sorted(r["path"] for r in sample_rows())  # sorted, deterministic
    ok = df[df["path"] == "a/ok.jpg"].iloc[0]
    assert ok["over_pct"] == pytest.approx(sample_rows()[1]["over_pct"])
    assert list(ok["hist"]) == sample_rows()[1]["hist"].tolist()
    bad = df[df["path"] == "z/bad.jpg"].iloc[0]
    assert bad["error"] == sample_rows()[0]["error"]
    assert bad["over_pct"] is None or math.isnan(bad["over_pct"])


def test_journal_ignores_torn_tail_and_dedupes(tmp_path):
    journal = Journal(tmp_path)
    journal.open()
    journal.append(sample_rows())
    journal.append([{"path": "a/ok.jpg", "status": "error", "error": "retried"}])
    journal.close()
    with open(journal.path, "a") as fh:
        fh.write('{"path": "torn.jpg", "sta')  # a write cut by a kill
    assert "torn.jpg" not in journal.statuses()
    df, _ = read_report(finalize(tmp_path, ReportFormat.parquet, base_columns(), {}))
    assert len(df) == 3
    assert df.set_index("path").loc["a/ok.jpg", "error"] == "retried"  # last row wins
    journal.open()  # reopening truncates the torn line so appends stay line-aligned
    journal.append([{"path": "after.jpg", "status": "ok"}])
    journal.close()
    assert set(journal.statuses()) == {"a/ok.jpg", "z/bad.jpg", "ü/naïve name,\nnewline.jpg", "after.jpg"}


def test_write_report_preserves_extra_columns(tmp_path):
    df = pd.DataFrame({"path": ["a.jpg"], "status": ["ok"], "score_x": [42.0], "grade_x": ["B"]})
    for fmt in ("parquet", "csv", "jsonl"):
        out = write_report(df, tmp_path / f"r.{fmt}", fmt, {"k": 1})
        back, meta = read_report(out)
        assert list(back.columns) == ["path", "status", "score_x", "grade_x"]
        assert back["score_x"][0] == 42.0 and meta["k"] == 1


def test_jsonl_keeps_text_that_looks_like_dates_or_numbers(tmp_path):
    df = pd.DataFrame({"path": ["2024-01-01.jpg", "123"], "status": ["ok", "ok"], "mtime": ["2024-01-01T00:00:00Z", None]})
    back, _ = read_report(write_report(df, tmp_path / "r.jsonl", "jsonl", {}))
    assert list(back["path"]) == ["2024-01-01.jpg", "123"]
    write_report(back, tmp_path / "again.jsonl", "jsonl", {})  # round-trips without NaT


def test_journal_rows_are_on_disk_before_append_returns(tmp_path, monkeypatch):
    """append() flushes and fsyncs the journal itself: a power cut after it returns loses nothing."""
    import os

    real_fsync = os.fsync
    synced: list[tuple[int, int]] = []  # (inode, size) of every file descriptor fsynced

    def recording_fsync(fd):
        info = os.fstat(fd)
        synced.append((info.st_ino, info.st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    journal = Journal(tmp_path)
    journal.open()
    try:
        journal.append([{"path": "a.jpg", "status": "ok"}])
        first = journal.path.stat()
        assert (first.st_ino, first.st_size) in synced  # the whole first row was written when fsync ran
        journal.append([{"path": "b.jpg", "status": "ok"}, {"path": "c.jpg", "status": "error"}])
        second = journal.path.stat()
        assert second.st_size > first.st_size and (second.st_ino, second.st_size) in synced
    finally:
        journal.close()
    assert [r["path"] for r in journal.rows()] == ["a.jpg", "b.jpg", "c.jpg"]
