"""Writing and reading reports (Parquet, CSV, JSONL) and their metadata sidecars.

During a scan, rows go to the output folder's journal, and the report file is rebuilt from it at the end;
that state — journal, lock, resume, finalisation, crash safety — is :mod:`exposure_cli.outdir`. Every
report file is written through :func:`exposure_cli.atomic.atomic_write` (temporary, fsync, rename).

Parquet keeps histograms as ``list<int64>`` columns and carries the scan's metadata (tool version,
analyzer, thresholds, rule sets) under the schema metadata key ``exposure_cli``. CSV is flat for
spreadsheets: histograms become space-separated counts; CSV, JSONL and XLSX get the metadata in a sidecar
``<stem>.meta.json`` beside them (``report.meta.json`` for a scan's ``report.csv``; a rescored
``report.rescored.csv`` gets ``report.rescored.meta.json`` and leaves the scan's own alone).

Spreadsheets: CSV files start with a UTF-8 byte-order mark (Excel reads UTF-8 only with it), ``mtime`` is
written as ``YYYY-MM-DDTHH:MM:SS`` (UTC; the form LibreOffice and Excel read as a date), and every text
cell that a spreadsheet would run as a formula is escaped (:func:`escape_formula`). ``read_report`` undoes
all three, so the tool's own readers get the original values back. XLSX (``pip install
'exposure-cli[xlsx]'``) writes typed cells — numbers, datetimes, text that is never a formula — with a
frozen header, an autofilter, fitted widths and scores coloured as on the HTML page.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import stat
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Sequence, TextIO

from ..atomic import atomic_write, atomic_write_text
from ..discovery import readable_text
from .schema import REPORT_FILENAMES, ReportFormat, arrow_schema, is_hist_column, is_int_column, is_string_column

STATE_DIR = ".exposure"
JOURNAL_NAME = "journal.jsonl"
META_KEY = b"exposure_cli"
ROW_GROUP = 4096  # rows per Parquet row group; also bounds memory while the report is built


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return clean_text(value)
    return value


#: Column names already cleaned (a report has a few hundred; bounded all the same).
_CLEAN_KEYS: dict[str, str] = {}
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=True)


def row_to_json(row: Mapping[str, Any]) -> str:
    # Text is cleaned before it is encoded: cleaning the encoded line would put `\xNN` (not a JSON escape)
    # into it, and the journal would drop the row as unreadable.
    # What _jsonable does, with the common exact types (float, str, int, None) decided without its checks:
    # one row of a scan has ~110 values, and this runs for every row on the scan's main thread.
    out = {}
    keys = _CLEAN_KEYS
    for k, v in row.items():
        key = keys.get(k) if type(k) is str else None
        if key is None:
            key = clean_text(k)
            if type(k) is str and len(keys) < 4096:
                keys[k] = key
        t = type(v)
        if t is float:
            out[key] = None if v != v else v
        elif t is str:
            out[key] = clean_text(v)
        elif v is None or t is int or t is bool:
            out[key] = v
        else:
            out[key] = _jsonable(v)
    return _ENCODER.encode(out)


def clean_text(text: str) -> str:
    """Text any UTF-8 writer accepts (see :func:`exposure_cli.discovery.readable_text`)."""
    return readable_text(text)


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
        name, typ = field.name, field.type
        # _normalise of every cell, with the values it leaves as they are (None, and the column's own
        # exact Python type: what the journal's JSON gives back) passed without its checks
        keep = _KEEP_AS_IS.get(_kind_of(typ))
        values = [r.get(name) for r in chunk]
        values = [v if v is None or type(v) is keep else _normalise(v, typ) for v in values]
        arrays.append(pa.array(values, type=typ))
    return pa.Table.from_arrays(arrays, schema=schema)


#: Per column kind, the one Python type whose values :func:`_normalise` returns unchanged (float(x) of a
#: float, int(x) of an int, str(x) of a str: the same object's value); lists have no kind of their own.
_KEEP_AS_IS = {"float": float, "int": int, "string": str, "other": list}


def _kind_of(typ) -> str:
    import pyarrow as pa

    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_integer(typ):
        return "int"
    if pa.types.is_string(typ):
        return "string"
    return "other"


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
    if fmt == ReportFormat.xlsx:
        return _write_xlsx(rows, path, columns, metadata)
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
    """Writes rows as CSV or JSONL to a text stream as they come (used for ``--out -`` too).

    CSV into a regular file (a report, or ``--out - > report.csv``) starts with a UTF-8 byte-order mark
    for spreadsheets; CSV into a pipe or a terminal does not (the programs reading a pipe don't want one).
    Text cells are escaped against formulas (:func:`escape_formula`) and every cell holding a CR or LF is
    quoted, so no reader sees a row that is not there.
    """

    def __init__(self, fh: TextIO, fmt: ReportFormat, columns: Sequence[str]) -> None:
        if fmt in (ReportFormat.parquet, ReportFormat.xlsx):
            raise ValueError(f"{fmt.value} cannot be streamed to a pipe; use --format csv or --format jsonl")
        self.fh, self.fmt, self.columns = fh, fmt, list(columns)
        self._csv = None
        if fmt == ReportFormat.csv:
            # The csv module quotes a cell only for the characters of its line terminator: with "\r\n" a
            # bare CR is quoted too. Rows are still written with "\n" (the terminator is swapped below).
            self._line = io.StringIO()
            self._csv = csv.writer(self._line, lineterminator="\r\n")
            if _is_regular_file(fh):
                fh.write("\ufeff")
            self._write_csv([clean_text(c) for c in self.columns])

    def _write_csv(self, cells: list[Any]) -> None:
        self._line.seek(0)
        self._line.truncate()
        self._csv.writerow(cells)
        self.fh.write(self._line.getvalue()[:-2] + "\n")

    def write(self, row: Mapping[str, Any]) -> None:
        if self._csv is not None:
            self._write_csv([_csv_cell(row.get(c), c) for c in self.columns])
        else:
            self.fh.write(row_to_json({c: row.get(c) for c in self.columns}) + "\n")

    def close(self) -> None:
        self.fh.flush()


def _is_regular_file(fh: Any) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


#: OWASP "CSV injection": a text cell starting with one of these is run as a formula by spreadsheets.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(text: str) -> str:
    """Make a text cell inert in spreadsheets (OWASP CSV injection): prefix ``'`` to text starting with
    ``= + - @``, tab or CR. Text that already starts with ``'`` gets one more, so :func:`unescape_formula`
    gives every value back exactly."""
    if text and (text[0] in FORMULA_TRIGGERS or text[0] == "'"):
        return "'" + text
    return text


def unescape_formula(text: str) -> str:
    """The inverse of :func:`escape_formula`."""
    return text[1:] if text.startswith("'") else text


_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_ISO_LOCAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
#: Columns holding times: ISO 8601 UTC (``mtime``) and EXIF's ``YYYY:MM:DD HH:MM:SS`` (``exif_datetime``).
DATETIME_FORMATS = {"mtime": "%Y-%m-%dT%H:%M:%SZ", "exif_datetime": "%Y:%m:%d %H:%M:%S"}


def _csv_cell(v: Any, column: str = "") -> Any:
    if v is None:
        return ""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list):
        return " ".join(str(int(x)) for x in v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, str):
        if column == "mtime" and _ISO_UTC.match(v):
            return v[:-1]  # without the "Z", spreadsheets read it as a date (UTC, as documented)
        return escape_formula(clean_text(v))
    return v


def _from_csv_text(df: Any) -> Any:
    """Undo the spreadsheet-friendly CSV writing: formula escapes, the date form of ``mtime``."""
    for c in df.columns:
        if is_string_column(c):
            df[c] = [unescape_formula(v) if isinstance(v, str) else v for v in df[c]]
    if "mtime" in df.columns:
        df["mtime"] = [v + "Z" if isinstance(v, str) and _ISO_LOCAL.match(v) else v for v in df["mtime"]]
    return df


# ---------------------------------------------------------------------------------------------- XLSX

#: Excel's row limit, less the header.
XLSX_MAX_ROWS = 1_048_575
#: Score colours and bands, as on the HTML page (report/html.py): below 50 bad, below 80 middling.
SCORE_BANDS = ((50.0, "#DD2233"), (80.0, "#BB7700"), (math.inf, "#22AA77"))


class MissingExtraError(RuntimeError):
    """An optional dependency is not installed; the message names the extra to install."""


def require_xlsx() -> Any:
    """The XlsxWriter module, or a :class:`MissingExtraError` naming the extra."""
    try:
        import xlsxwriter
    except ImportError:
        raise MissingExtraError(
            "--format xlsx needs XlsxWriter: pip install 'exposure-cli[xlsx]'") from None
    return xlsxwriter


def score_colour(score: float) -> str:
    for limit, colour in SCORE_BANDS:
        if score < limit:
            return colour
    return SCORE_BANDS[-1][1]


def _write_xlsx(rows: Iterable[Mapping[str, Any]], path: Path, columns: Sequence[str],
                metadata: Mapping[str, Any]) -> int:
    xlsxwriter = require_xlsx()
    columns = list(columns)
    # constant_memory streams rows to disk; the options make sure no text ever becomes a formula,
    # a number or a link: every text cell is written with write_string.
    book = xlsxwriter.Workbook(path if hasattr(path, "write") else str(path), {"constant_memory": True, "strings_to_formulas": False,
                                           "strings_to_numbers": False, "strings_to_urls": False})
    try:
        sheet = book.add_worksheet("report")
        header = book.add_format({"bold": True, "bottom": 1, "bg_color": "#EEEEEE"})
        when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        bands = {colour: book.add_format({"bold": True, "font_color": colour}) for _, colour in SCORE_BANDS}
        widths = [len(c) for c in columns]
        for j, c in enumerate(columns):
            sheet.write_string(0, j, c, header)
        n = 0
        for n, row in enumerate(rows, start=1):
            if n > XLSX_MAX_ROWS:
                raise ValueError(f"an XLSX sheet holds at most {XLSX_MAX_ROWS:,} rows; use --format parquet or csv")
            band = {}
            for j, c in enumerate(columns):
                v = row.get(c)
                if hasattr(v, "tolist"):
                    v = v.tolist()
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                if c.startswith("score_") and isinstance(v, (int, float)):
                    band[c[len("score_"):]] = bands[score_colour(float(v))]
                    sheet.write_number(n, j, float(v), band[c[len("score_"):]])
                    width = len(f"{v:g}")
                elif c.startswith("grade_") and c[len("grade_"):] in band:
                    sheet.write_string(n, j, str(v), band[c[len("grade_"):]])
                    width = len(str(v))
                elif isinstance(v, list):
                    text = " ".join(str(int(x)) for x in v)
                    sheet.write_string(n, j, text)
                    width = min(len(text), 24)
                elif isinstance(v, bool) or not isinstance(v, (int, float, str)):
                    sheet.write_string(n, j, str(v))
                    width = len(str(v))
                elif isinstance(v, (int, float)):
                    if math.isinf(v):
                        sheet.write_string(n, j, "inf" if v > 0 else "-inf")
                    else:
                        sheet.write_number(n, j, v)
                    width = len(f"{v:.6g}")
                elif c in DATETIME_FORMATS and _parse_time(v, c) is not None:
                    sheet.write_datetime(n, j, _parse_time(v, c), when)
                    width = 19
                else:
                    sheet.write_string(n, j, v)
                    width = len(v)
                widths[j] = max(widths[j], width)
        for j, width in enumerate(widths):
            sheet.set_column(j, j, min(width, 60) + 2)
        sheet.freeze_panes(1, 1)  # the header row and the photo's path stay in view
        sheet.autofilter(0, 0, max(n, 1), len(columns) - 1)
        info = book.add_worksheet("metadata")
        for i, (key, value) in enumerate(dict(metadata).items()):
            info.write_string(i, 0, str(key))
            info.write_string(i, 1, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        info.set_column(0, 0, 20)
        info.set_column(1, 1, 100)
    finally:
        book.close()
    return n


def _parse_time(v: str, column: str) -> datetime | None:
    try:
        return datetime.strptime(v, DATETIME_FORMATS[column])
    except ValueError:
        return None


def _read_xlsx(path: Path) -> Any:
    import pandas as pd

    try:
        import openpyxl  # noqa: F401  (pandas' reader for .xlsx)
    except ImportError:
        raise MissingExtraError("reading an XLSX report needs openpyxl: pip install 'exposure-cli[xlsx]'") from None
    df = pd.read_excel(path, sheet_name="report", engine="openpyxl", keep_default_na=False, na_values=[""],
                       dtype={c: object for c in _xlsx_header(path) if is_string_column(c)})
    for c in df.columns:
        if is_hist_column(c):
            df[c] = [list(map(int, v.split())) if isinstance(v, str) and v else None for v in df[c]]
        elif c in DATETIME_FORMATS:
            df[c] = [v.strftime(DATETIME_FORMATS[c]) if hasattr(v, "strftime") else v for v in df[c]]
        elif is_string_column(c):
            df[c] = [None if isinstance(v, float) and math.isnan(v) else (v if v is None or isinstance(v, str) else str(v))
                     for v in df[c]]
        elif is_int_column(c):
            df[c] = df[c].astype("Int64") if df[c].isna().any() else df[c].astype("int64")
    return df


def _xlsx_header(path: Path) -> list[str]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return [str(c.value) for c in next(book["report"].iter_rows(min_row=1, max_row=1))]
    finally:
        book.close()


def read_report(path: str | os.PathLike) -> tuple["pandas.DataFrame", dict[str, Any]]:  # noqa: F821
    """Read a report written by any writer → (DataFrame, metadata). Histograms come back as lists."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        candidates = [path / n for n in REPORT_FILENAMES.values() if (path / n).exists()]
        if not candidates:
            raise FileNotFoundError(f"no report.parquet, report.csv, report.jsonl or report.xlsx in {path}")
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
            if is_hist_column(c):
                df[c] = [None if v is None else list(v) for v in df[c]]
        return df, meta
    sidecar = sidecar_path(path)
    if sidecar.exists():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
        df = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, na_values=[""],
                         dtype={c: str for c in header if is_string_column(c)})
        for c in df.columns:
            if is_hist_column(c):
                df[c] = [list(map(int, v.split())) if isinstance(v, str) and v else None for v in df[c]]
        return _from_csv_text(df), meta
    if suffix == ".xlsx":
        return _read_xlsx(path), meta
    if suffix in (".jsonl", ".json"):
        # No type guessing: paths that look like dates or numbers must stay text.
        df = pd.read_json(path, lines=True, dtype=False)
        return df, meta
    raise ValueError(f"unknown report format: {path.name} (expected .parquet, .csv, .jsonl or .xlsx)")


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
