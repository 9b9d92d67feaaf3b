"""Writing and reading reports (Parquet, CSV, JSONL) and their metadata sidecars.

During a scan, rows go to the output folder's journal, and the report file is rebuilt from it at the end;
that state — journal, lock, resume, finalisation, crash safety — is :mod:`exposure_cli.outdir`. Every
report file is written through :func:`exposure_cli.atomic.atomic_write` (temporary, fsync, rename).

Parquet keeps histograms as ``list<int64>`` columns and carries the scan's metadata (tool version,
analyzer, thresholds, rule sets) under the schema metadata key ``exposure_cli``. CSV is flat for
spreadsheets: histograms become space-separated counts; CSV and JSONL get the metadata in a sidecar
``<stem>.meta.json`` beside them (``report.meta.json`` for a scan's ``report.csv``; a rescored
``report.rescored.csv`` gets ``report.rescored.meta.json`` and leaves the scan's own alone).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Sequence, TextIO

from ..atomic import atomic_write, atomic_write_text
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


def sidecar_name(report_name: str) -> str:
    """The metadata sidecar of a report file: ``report.csv`` → ``report.meta.json``."""
    stem = report_name.rsplit(".", 1)[0] if "." in report_name else report_name
    return f"{stem}.meta.json"


def sidecar_path(report: str | os.PathLike) -> Path:
    report = Path(report)
    return report.with_name(sidecar_name(report.name))


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
    path: Path | BinaryIO,
    fmt: ReportFormat,
    columns: Sequence[str],
    metadata: Mapping[str, Any],
) -> int:
    """Stream rows into a report file (a path, or a binary file object left open). Returns the row count."""
    n = 0
    if fmt == ReportFormat.parquet:
        import pyarrow.parquet as pq

        where = path if hasattr(path, "write") else str(path)
        schema = arrow_schema(list(columns)).with_metadata({META_KEY: json.dumps(dict(metadata)).encode()})
        with pq.ParquetWriter(where, schema, compression="zstd") as writer:
            for chunk in _chunks(rows, ROW_GROUP):
                writer.write_table(_arrow_table(chunk, schema), row_group_size=ROW_GROUP)
                n += len(chunk)
        return n
    with contextlib.ExitStack() as stack:
        if hasattr(path, "write"):
            fh = io.TextIOWrapper(path, encoding="utf-8", newline="")
            stack.callback(fh.detach)  # leave the caller's file open
        else:
            fh = stack.enter_context(open(path, "w", encoding="utf-8", newline=""))
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
    sidecar = sidecar_path(path)
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
    records = ({k: (None if _isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records"))
    atomic_write(path, lambda fh: write_rows(records, fh, fmt, list(df.columns), metadata or {}))
    if fmt != ReportFormat.parquet:
        atomic_write_text(sidecar_path(path), json.dumps(dict(metadata or {}), indent=2, ensure_ascii=False) + "\n")
    return path


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
