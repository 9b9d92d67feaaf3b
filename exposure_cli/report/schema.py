"""The report's columns, in order, and their Arrow types — one place, used by every writer."""

from __future__ import annotations

import re
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
    "path_bytes",
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

_STRING = {"path", "path_bytes", "status", "error", "format", "mtime", "analyzer", "analyzer_version", "weights_sha256",
           "exif_make", "exif_model", "exif_datetime", "overlay_path", "map_path"}
_INT = {"size_bytes", "width", "height", "analysis_width", "analysis_height", "bit_depth"}


def is_string_column(c: str) -> bool:
    """Text columns (everything else is a number, an integer or a histogram); see :func:`column_kind`."""
    return column_kind(c) == "string"


def is_int_column(c: str) -> bool:
    return column_kind(c) == "int"


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


#: The one grammar of rule-set names, shared by ``rules validate`` and every writer: a name becomes the
#: column suffix ``score_<name>``. ASCII letters and digits, then also ``_`` and ``-``; 1-64 characters;
#: matched whole (``fullmatch``: no trailing newline slips through as with ``$``).
RULE_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
RULE_SET_NAME_HELP = "1-64 ASCII letters, digits, '-' and '_', starting with a letter or digit"


def is_rule_set_name(name: object) -> bool:
    return isinstance(name, str) and RULE_SET_NAME.fullmatch(name) is not None


def rule_columns(rule_names: list[str]) -> list[str]:
    """The columns of rule sets: ``score_<name>``, ``grade_<name>``, ``reasons_<name>`` for each name.

    Raises:
        ValueError: A name outside :data:`RULE_SET_NAME`.
    """
    cols = []
    for name in rule_names:
        if not is_rule_set_name(name):
            raise ValueError(f"invalid rule set name {name!r}: {RULE_SET_NAME_HELP}")
        cols += [f"score_{name}", f"grade_{name}", f"reasons_{name}"]
    return cols


#: The histogram (list) columns, by name: a column's kind is never guessed from how its name ends
#: (a rule set named ``myhist`` has a float column ``score_myhist``).
HIST_COLUMNS = frozenset(hist_column(r) for r in REGIONS)


def column_kind(c: str) -> str:
    """``"string"``, ``"int"``, ``"hist"`` or ``"float"``: rule columns by their prefix, others by name."""
    if c.startswith("score_"):
        return "float"
    if c.startswith(("grade_", "reasons_")) or c in _STRING:
        return "string"
    if c in _INT:
        return "int"
    if c in HIST_COLUMNS:
        return "hist"
    return "float"


def is_hist_column(c: str) -> bool:
    return column_kind(c) == "hist"


def arrow_schema(columns: list[str]):
    """Arrow schema for the given column list (see :func:`column_kind`)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "hist": pa.list_(pa.int64()), "float": pa.float64()}
    return pa.schema([pa.field(c, types[column_kind(c)]) for c in columns])
