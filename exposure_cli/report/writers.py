"""Writing and reading reports: a crash-safe journal during the scan, one tidy file at the end.

While a scan runs, finished rows are appended to ``OUT/.exposure/journal.jsonl`` and flushed + fsynced
once per batch, so a scan killed at any moment loses at most the batch in flight (a torn last line is
ignored on resume). The report file (``report.parquet`` / ``.csv`` / ``.jsonl``) is (re)built from the
journal — deduplicated by ``path`` (the last row wins), sorted by ``path`` — into a temporary file that is
atomically renamed into place, so readers never see a half-written report.

Parquet keeps histograms as ``list<int64>`` columns and carries the scan's metadata (tool version,
analyzer, thresholds, rule sets) under the schema metadata key ``exposure_cli``. CSV is flat for
spreadsheets: histograms become space-separated counts; CSV and JSONL get the metadata in a sidecar
``report.meta.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TextIO

from .schema import REPORT_FILENAMES, ReportFormat, arrow_schema

STATE_DIR = ".exposure"
JOURNAL_NAME = "journal.jsonl"
META_KEY = b"exposure_cli"
ROW_GROUP = 4096  # rows per Parquet row group; also bounds memory while the report is built


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def row_to_json(row: Mapping[str, Any]) -> str:
    return json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False, allow_nan=True)


class Journal:
    """Append-only JSONL journal of finished rows (see module docstring)."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir) / STATE_DIR
        self.path = self.dir / JOURNAL_NAME
        self._fh: io.TextIOWrapper | None = None

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every complete row, in journal order (a torn trailing line is skipped)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn write from a killed scan
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def statuses(self) -> dict[str, str]:
        """path → status of the last row per path."""
        return {r["path"]: r.get("status", "ok") for r in self.rows()}

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._truncate_torn_tail()
        self._fh = open(self.path, "a", encoding="utf-8", newline="\n")

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows and make them durable (one write + fsync per call)."""
        assert self._fh is not None, "journal not open"
        text = "".join(row_to_json(r) + "\n" for r in rows)
        if not text:
            return
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError:
                # Only a failed append leaves unflushed text behind, and that append has raised
                # already; every row that append() returned for is on disk.
                pass


def _ordered_unique_rows(rows_source: Journal) -> list[tuple[str, int]]:
    """(path, byte offset of its last row) sorted by path, from one pass over the journal."""
    last: dict[str, int] = {}
    with open(rows_source.path, "rb") as fh:
        offset = 0
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                key = json.loads(line)["path"]
            except (ValueError, KeyError, TypeError):
                offset += len(line)
                continue
            last[key] = offset
            offset += len(line)
    return sorted(last.items())


def _iter_by_offsets(journal: Journal, order: Sequence[tuple[str, int]]) -> Iterator[dict[str, Any]]:
    with open(journal.path, "rb") as fh:
        for _, off in order:
            fh.seek(off)
            yield json.loads(fh.readline())


def finalize(
    out_dir: Path,
    fmt: ReportFormat,
    columns: Sequence[str],
    metadata: Mapping[str, Any],
) -> Path:
    """Build the report file from the journal, atomically. Returns its path."""
    journal = Journal(out_dir)
    target = Path(out_dir) / REPORT_FILENAMES[fmt]
    tmp = target.with_name(f".{target.name}.tmp")
    order = _ordered_unique_rows(journal) if journal.path.exists() else []
    rows = _iter_by_offsets(journal, order) if order else iter(())
    meta_path = Path(out_dir) / "report.meta.json"
    meta_tmp = meta_path.with_name(".report.meta.json.tmp")
    try:
        write_rows(rows, tmp, fmt, columns, metadata)
        os.replace(tmp, target)
        meta_tmp.write_text(json.dumps(dict(metadata), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(meta_tmp, meta_path)
    except BaseException:
        # On a full disk the previous report (if any) stays in place; leave no half-written temporaries.
        for leftover in (tmp, meta_tmp):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    return target


def _chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    chunk: list[Mapping[str, Any]] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _arrow_table(chunk: Sequence[Mapping[str, Any]], schema):
    import pyarrow as pa

    arrays = []
    for field in schema:
        values = [_normalise(r.get(field.name), field.type) for r in chunk]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _normalise(v: Any, typ) -> Any:
    import pyarrow as pa

    if v is None:
        return None
    if hasattr(v, "tolist"):
        v = v.tolist()
    if pa.types.is_floating(typ):
        return float(v) if v is not None else None
    if pa.types.is_integer(typ):
        return int(v)
    if pa.types.is_string(typ):
        return str(v)
    return v


def write_rows(
    rows: Iterable[Mapping[str, Any]],
    path: Path,
    fmt: ReportFormat,
    columns: Sequence[str],
    metadata: Mapping[str, Any],
) -> int:
    """Stream rows into a report file of the given format. Returns the row count."""
    path = Path(path)
    n = 0
    if fmt == ReportFormat.parquet:
        import pyarrow.parquet as pq

        schema = arrow_schema(list(columns)).with_metadata({META_KEY: json.dumps(dict(metadata)).encode()})
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for chunk in _chunks(rows, ROW_GROUP):
                writer.write_table(_arrow_table(chunk, schema), row_group_size=ROW_GROUP)
                n += len(chunk)
        return n
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = RowStreamWriter(fh, fmt, columns)
        for r in rows:
            w.write(r)
            n += 1
        w.close()
    return n


class RowStreamWriter:
    """Writes rows as CSV or JSONL to a text stream as they come (used for ``--out -`` too)."""

    def __init__(self, fh: TextIO, fmt: ReportFormat, columns: Sequence[str]) -> None:
        if fmt == ReportFormat.parquet:
            raise ValueError("Parquet cannot be streamed to a pipe; use --format csv or --format jsonl")
        self.fh, self.fmt, self.columns = fh, fmt, list(columns)
        self._csv = csv.writer(fh, lineterminator="\n") if fmt == ReportFormat.csv else None
        if self._csv is not None:
            self._csv.writerow(self.columns)

    def write(self, row: Mapping[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([_csv_cell(row.get(c)) for c in self.columns])
        else:
            self.fh.write(row_to_json({c: row.get(c) for c in self.columns}) + "\n")

    def close(self) -> None:
        self.fh.flush()


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list):
        return " ".join(str(int(x)) for x in v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def read_report(path: str | os.PathLike) -> tuple["pandas.DataFrame", dict[str, Any]]:  # noqa: F821
    """Read a report written by any writer → (DataFrame, metadata). Histograms come back as lists."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        candidates = [path / n for n in REPORT_FILENAMES.values() if (path / n).exists()]
        if not candidates:
            raise FileNotFoundError(f"no report.parquet, report.csv or report.jsonl in {path}")
        path = candidates[0]
    meta: dict[str, Any] = {}
    suffix = path.suffix.lower()
    if suffix == ".parquet" or path.is_dir():
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(META_KEY)
        meta = json.loads(raw) if raw else {}
        df = table.to_pandas()
        for c in df.columns:
            if c.endswith("hist"):
                df[c] = [None if v is None else list(v) for v in df[c]]
        return df, meta
    sidecar = path.with_name("report.meta.json")
    if sidecar.exists():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if suffix == ".csv":
        df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"path": str, "error": str})
        for c in df.columns:
            if c.endswith("hist"):
                df[c] = [list(map(int, v.split())) if isinstance(v, str) and v else None for v in df[c]]
        return df, meta
    if suffix in (".jsonl", ".json"):
        # No type guessing: paths that look like dates or numbers must stay text.
        df = pd.read_json(path, lines=True, dtype=False)
        return df, meta
    raise ValueError(f"unknown report format: {path.name} (expected .parquet, .csv or .jsonl)")


def write_report(df, path: str | os.PathLike, fmt: ReportFormat | str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a DataFrame as a report (atomically), keeping its column order."""
    path = Path(path)
    fmt = ReportFormat(fmt) if fmt else ReportFormat(path.suffix.lstrip(".").lower() or "parquet")
    tmp = path.with_name(f".{path.name}.tmp")
    records = ({k: (None if _isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records"))
    write_rows(records, tmp, fmt, list(df.columns), metadata or {})
    os.replace(tmp, path)
    if fmt != ReportFormat.parquet:
        path.with_name("report.meta.json").write_text(json.dumps(dict(metadata or {}), indent=2) + "\n")
    return path


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
