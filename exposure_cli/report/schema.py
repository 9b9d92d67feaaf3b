"""The report's columns, in order, and their Arrow types — one place, used by every writer."""

from __future__ import annotations

from enum import Enum

from ..exif import EXIF_COLUMNS
from ..stats import REGION_METRICS, REGIONS, column, hist_column


class ReportFormat(str, Enum):
    """Report file formats."""

    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"
    xlsx = "xlsx"


#: Rule sets a scan applies when none are named (``--no-rules``: none).
DEFAULT_RULES = ("default",)

REPORT_FILENAMES = {ReportFormat.parquet: "report.parquet", ReportFormat.csv: "report.csv",
                    ReportFormat.jsonl: "report.jsonl", ReportFormat.xlsx: "report.xlsx"}

#: Identity and file facts.
FILE_COLUMNS = (
    "path",
    "status",
    "error",
    "size_bytes",
    "mtime",
    "format",
    "width",
    "height",
    "analysis_width",
    "analysis_height",
    "bit_depth",
)
ANALYZER_COLUMNS = ("analyzer", "analyzer_version", "weights_sha256")
OUTPUT_COLUMNS = ("overlay_path", "map_path")

_STRING = {"path", "status", "error", "format", "mtime", "analyzer", "analyzer_version", "weights_sha256",
           "exif_make", "exif_model", "exif_datetime", "overlay_path", "map_path"}
_INT = {"size_bytes", "width", "height", "analysis_width", "analysis_height", "bit_depth"}


def is_string_column(c: str) -> bool:
    """Text columns (everything else is a number, an integer or a histogram)."""
    return c in _STRING or c.startswith(("grade_", "reasons_"))


def is_int_column(c: str) -> bool:
    return c in _INT


def stat_columns() -> list[str]:
    cols = []
    for region in REGIONS:
        cols += [column(region, m) for m in REGION_METRICS]
    return cols


def hist_columns() -> list[str]:
    return [hist_column(r) for r in REGIONS]


def base_columns() -> list[str]:
    """Every column a scan writes before rule-set columns, in order."""
    return [*FILE_COLUMNS, *EXIF_COLUMNS, *ANALYZER_COLUMNS, *stat_columns(), *hist_columns(), *OUTPUT_COLUMNS]


def rule_columns(rule_names: list[str]) -> list[str]:
    cols = []
    for name in rule_names:
        cols += [f"score_{name}", f"grade_{name}", f"reasons_{name}"]
    return cols


def arrow_schema(columns: list[str]):
    """Arrow schema for the given column list (rule columns typed by prefix)."""
    import pyarrow as pa

    fields = []
    for c in columns:
        if is_string_column(c):
            t = pa.string()
        elif is_int_column(c):
            t = pa.int64()
        elif c.endswith("hist"):
            t = pa.list_(pa.int64())
        else:
            t = pa.float64()
        fields.append(pa.field(c, t))
    return pa.schema(fields)
