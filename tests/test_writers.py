"""The report writers (exposure_cli.report.writers) unit by unit: JSON rows, sidecar names, chunking,
Parquet row groups and metadata, the CSV stream (byte-order mark, quoting, formula escapes, dates), the XLSX
sheet (typed cells, colours, widths, filter, metadata sheet) and reading every format back.

``tools/mutation.py writers`` runs these (with test_report.py and test_outdir.py) against mutants of the
writers; each expected value here is written out by hand.
"""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from exposure_cli.report import writers
from exposure_cli.report.schema import ReportFormat
from exposure_cli.report.writers import (
    RowStreamWriter, _chunks, _csv_cell, _from_csv_text, _is_regular_file, _jsonable, _normalise, _parse_time,
    escape_formula, read_report, row_to_json, score_colour, sidecar_name, sidecar_path, unescape_formula,
    write_report, write_rows,
)

RED, AMBER, GREEN = "#DD2233", "#BB7700", "#22AA77"


# ------------------------------------------------------------------------------------------ JSON rows


def test_jsonable_turns_arrays_and_nan_into_json_values():
    assert _jsonable(np.array([1, 2])) == [1, 2] and isinstance(_jsonable(np.array([1, 2])), list)
    assert _jsonable(np.float32(0.5)) == 0.5 and type(_jsonable(np.float32(0.5))) is float
    assert _jsonable(float("nan")) is None
    assert _jsonable(1.5) == 1.5 and _jsonable("x") == "x" and _jsonable(None) is None


def test_row_to_json_is_one_line_of_readable_utf8_with_null_for_nan():
    text = row_to_json({"path": "ü/a\nb.jpg", "x": float("nan"), "h": np.array([3, 4]), "bad": "a\udcffb",
                        "v": np.float64(0.25)})
    assert "\n" not in text and "ü" in text
    assert json.loads(text) == {"path": "ü/a\nb.jpg", "x": None, "h": [3, 4], "bad": "a\\xffb", "v": 0.25}
    assert row_to_json({"inf": float("inf")}) == '{"inf": Infinity}'  # allow_nan: no exception
    assert row_to_json({"k\udcfe": "\ud800"}) == '{"k\\\\xfe": "\\\\ud800"}'


def test_a_row_with_undecodable_text_survives_the_journal(tmp_path):
    """An error message quoting a file name that is not UTF-8 (a lone surrogate in Python) is journalled
    as readable text and read back; the first version cleaned the encoded line, wrote `\\xff` (not a JSON
    escape) and the journal dropped the row as unreadable."""
    from exposure_cli.outdir import Journal

    journal = Journal(tmp_path)
    journal.open()
    journal.append([{"path": "a.jpg", "status": "error", "error": "cannot open \udcff.jpg"}])
    journal.close()
    assert list(journal.rows()) == [{"path": "a.jpg", "status": "error", "error": "cannot open \\xff.jpg"}]


def test_sidecar_names():
    assert sidecar_name("report.csv") == "report.meta.json"
    assert sidecar_name("report.rescored.csv") == "report.rescored.meta.json"
    assert sidecar_name("report") == "report.meta.json"
    assert sidecar_path("/a/b/report.jsonl") == __import__("pathlib").Path("/a/b/report.meta.json")


def test_chunks_are_full_except_the_last_and_never_empty():
    assert [len(c) for c in _chunks(range(7), 3)] == [3, 3, 1]
    assert [c for c in _chunks(range(6), 3)] == [[0, 1, 2], [3, 4, 5]]
    assert list(_chunks([], 3)) == []
    assert [c for c in _chunks(range(2), 1)] == [[0], [1]]


def test_normalise_casts_to_the_column_type():
    import pyarrow as pa

    assert _normalise(None, pa.float64()) is None
    assert _normalise(np.int64(3), pa.float64()) == 3.0 and type(_normalise(np.int64(3), pa.float64())) is float
    assert _normalise(3.0, pa.int64()) == 3 and type(_normalise(3.0, pa.int64())) is int
    assert _normalise(5, pa.string()) == "5"
    assert _normalise(np.array([1, 2]), pa.list_(pa.int64())) == [1, 2]


# -------------------------------------------------------------------------------------------- Parquet


def test_parquet_rows_go_in_row_groups_with_the_metadata(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(writers, "ROW_GROUP", 2)
    rows = [{"path": f"{i}.jpg", "status": "ok", "width": i, "over_pct": i / 2} for i in range(5)]
    path = tmp_path / "r.parquet"
    assert write_rows(iter(rows), path, ReportFormat.parquet, ["path", "status", "width", "over_pct"],
                      {"thresholds": {"over": 0.1}}) == 5
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2, 2, 1]
    df, info = read_report(path)
    assert info == {"thresholds": {"over": 0.1}}
    assert df["width"].tolist() == [0, 1, 2, 3, 4] and df["over_pct"].tolist() == [0, 0.5, 1, 1.5, 2]
    buf = io.BytesIO()
    assert write_rows(rows[:1], buf, ReportFormat.parquet, ["path"], {}) == 1
    assert buf.getvalue()[:4] == b"PAR1"


def test_parquet_histograms_come_back_as_lists_and_missing_ones_as_none(tmp_path):
    rows = [{"path": "a", "status": "ok", "hist": np.array([1, 2, 3])}, {"path": "b", "status": "error"}]
    path = tmp_path / "r.parquet"
    write_rows(rows, path, ReportFormat.parquet, ["path", "status", "hist"], {})
    df, meta = read_report(path)
    assert df["hist"].tolist() == [[1, 2, 3], None] and isinstance(df["hist"][0], list) and meta == {}


# ------------------------------------------------------------------------------------------------ CSV


def test_csv_cells():
    assert _csv_cell(None) == ""
    assert _csv_cell([1, 2.0, 3]) == "1 2 3" and _csv_cell(np.array([4, 5])) == "4 5"
    assert _csv_cell(float("nan")) == "" and _csv_cell(0.1) == "0.1" and _csv_cell(1 / 3) == repr(1 / 3)
    assert _csv_cell(np.float64(0.5)) == "0.5"
    assert _csv_cell(7) == 7 and _csv_cell(True) is True
    assert _csv_cell("2024-01-02T03:04:05Z", "mtime") == "2024-01-02T03:04:05"
    assert _csv_cell("2024-01-02T03:04:05Z", "path") == "2024-01-02T03:04:05Z"
    assert _csv_cell("2024-01-02T03:04:05", "mtime") == "2024-01-02T03:04:05"
    assert _csv_cell("x2024-01-02T03:04:05Z", "mtime") == "x2024-01-02T03:04:05Z"
    assert _csv_cell("=HYPERLINK(1)", "path") == "'=HYPERLINK(1)"
    assert _csv_cell("a\udcffb") == "a\\xffb"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'quoted"])
def test_formula_triggers_are_escaped_and_undone(text):
    assert escape_formula(text) == "'" + text
    assert unescape_formula(escape_formula(text)) == text


@pytest.mark.parametrize("text", ["", "a=b", "photo.jpg", " =x", "1"])
def test_harmless_text_is_left_alone(text):
    assert escape_formula(text) == text
    assert unescape_formula(text) == text


def test_csv_text_is_turned_back():
    df = pd.DataFrame({"path": ["'=a", "b", None], "mtime": ["2024-01-02T03:04:05", "2024-01-02T03:04:05Z", None],
                       "over_pct": [1.0, 2.0, 3.0]})
    out = _from_csv_text(df)
    assert out["path"].tolist()[:2] == ["=a", "b"] and pd.isna(out["path"][2])
    assert out["mtime"].tolist()[:2] == ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"] and pd.isna(out["mtime"][2])
    assert out["over_pct"].tolist() == [1.0, 2.0, 3.0]


def test_csv_file_has_a_bom_quotes_line_breaks_and_reads_back(tmp_path):
    rows = [{"path": "=a\rb.jpg", "status": "ok", "error": "line1\nline2", "hist": [1, 2], "over_pct": 0.5,
             "mtime": "2024-01-02T03:04:05Z"},
            {"path": "'c.jpg", "status": "error", "error": None}]
    columns = ["path", "status", "error", "hist", "over_pct", "mtime"]
    path = tmp_path / "r.csv"
    assert write_rows(rows, path, ReportFormat.csv, columns, {}) == 2
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfpath,status,error,hist,over_pct,mtime\n")
    assert raw.count(b"\r\n") == 0 and raw.endswith(b"\n")
    assert b"\"'=a\rb.jpg\",ok,\"line1\nline2\",1 2,0.5,2024-01-02T03:04:05\n" in raw
    assert b"''c.jpg,error,,,," in raw
    (tmp_path / "r.meta.json").write_text('{"k": 2}')
    df, meta = read_report(path)
    assert meta == {"k": 2}
    assert df["path"].tolist() == ["=a\rb.jpg", "'c.jpg"]
    assert df["error"].tolist()[0] == "line1\nline2" and df["hist"].tolist() == [[1, 2], None]
    assert df["mtime"].tolist()[0] == "2024-01-02T03:04:05Z"


def test_csv_into_a_stream_has_no_bom_and_leaves_the_stream_open():
    buf = io.BytesIO()
    assert write_rows([{"path": "a", "status": "ok"}], buf, ReportFormat.csv, ["path", "status"], {}) == 1
    assert not buf.closed
    assert buf.getvalue() == b"path,status\na,ok\n"


def test_regular_files_only_are_regular(tmp_path):
    assert not _is_regular_file(io.StringIO())
    assert not _is_regular_file(object())
    with open(tmp_path / "f", "w") as fh:
        assert _is_regular_file(fh)
    r, w = os.pipe()
    try:
        with os.fdopen(w, "w") as fh:
            assert not _is_regular_file(fh)
    finally:
        os.close(r)


@pytest.mark.parametrize("fmt", [ReportFormat.parquet, ReportFormat.xlsx])
def test_binary_formats_cannot_be_streamed(fmt):
    with pytest.raises(ValueError, match=f"{fmt.value} cannot be streamed to a pipe; use --format csv or --format jsonl"):
        RowStreamWriter(io.StringIO(), fmt, ["path"])


def test_jsonl_stream_writes_the_columns_in_order():
    fh = io.StringIO()
    w = RowStreamWriter(fh, ReportFormat.jsonl, ["status", "path", "missing"])
    w.write({"path": "a", "status": "ok", "other": 1, "x": float("nan")})
    w.close()
    assert fh.getvalue() == '{"status": "ok", "path": "a", "missing": null}\n'


def test_csv_stream_header_is_cleaned():
    fh = io.StringIO()
    RowStreamWriter(fh, ReportFormat.csv, ["pa\udcffth"]).close()
    assert fh.getvalue() == "pa\\xffth\n"


# ----------------------------------------------------------------------------------------------- XLSX


def test_score_colours_follow_the_html_bands():
    assert [score_colour(s) for s in (0, 49.9, 50, 79.9, 80, 100)] == [RED, RED, AMBER, AMBER, GREEN, GREEN]
    assert score_colour(float("nan")) == GREEN


def test_parse_time():
    from datetime import datetime

    assert _parse_time("2024-01-02T03:04:05Z", "mtime") == datetime(2024, 1, 2, 3, 4, 5)
    assert _parse_time("2024:01:02 03:04:05", "exif_datetime") == datetime(2024, 1, 2, 3, 4, 5)
    assert _parse_time("2024-01-02", "mtime") is None


def _widths(sheet) -> dict[int, int]:
    """Column number → width as XlsxWriter was asked for it (it stores it plus 0.7109375 of padding)."""
    out = {}
    for dim in sheet.column_dimensions.values():
        for i in range(dim.min, dim.max + 1):
            out[i] = round(dim.width - 0.7109375, 6)
    return out


def _xlsx(tmp_path, rows, columns, metadata=None):
    import openpyxl

    path = tmp_path / "r.xlsx"
    n = write_rows(rows, path, ReportFormat.xlsx, columns, metadata or {})
    return n, path, openpyxl.load_workbook(path)


def test_xlsx_cells_are_typed_and_scores_coloured(tmp_path):
    from datetime import datetime

    rows = [{"path": "=cmd.jpg", "status": "ok", "score_a": 42.0, "grade_a": "D", "score_b": 95, "grade_b": "A",
             "grade_c": "B", "hist": np.array([1, 2]), "flag": True, "over_pct": float("inf"), "under_pct": -math.inf,
             "width": 640, "mean_residual": float("nan"), "mtime": "2024-01-02T03:04:05Z",
             "exif_datetime": "2023:05:06 07:08:09", "error": None, "note": "plain", "ev": np.float64(0.5)},
            {"path": "b.jpg", "status": "ok", "score_a": 65, "grade_a": "C", "mtime": "not a date"}]
    columns = ["path", "status", "score_a", "grade_a", "score_b", "grade_b", "grade_c", "hist", "flag", "over_pct",
               "under_pct", "width", "mean_residual", "mtime", "exif_datetime", "error", "note", "ev"]
    n, path, book = _xlsx(tmp_path, rows, columns, {"tool": "exposure-cli", "thresholds": {"over": 0.1}})
    assert n == 2
    sheet = book["report"]
    assert book.sheetnames == ["report", "metadata"]
    assert [c.value for c in sheet[1]] == columns
    assert all(c.font.b for c in sheet[1]) and sheet["A1"].fill.fgColor.rgb.endswith("EEEEEE")
    values = {c: sheet.cell(2, j + 1).value for j, c in enumerate(columns)}
    assert values == {"path": "=cmd.jpg", "status": "ok", "score_a": 42, "grade_a": "D", "score_b": 95,
                      "grade_b": "A", "grade_c": "B", "hist": "1 2", "flag": "True", "over_pct": "inf",
                      "under_pct": "-inf", "width": 640, "mean_residual": None,
                      "mtime": datetime(2024, 1, 2, 3, 4, 5), "exif_datetime": datetime(2023, 5, 6, 7, 8, 9),
                      "error": None, "note": "plain", "ev": 0.5}
    assert sheet.cell(2, 1).data_type == "s"  # a formula never
    def colour(row, col):
        rgb = getattr(sheet.cell(row, col).font.color, "rgb", None)
        return rgb[-6:] if isinstance(rgb, str) else None

    assert (colour(2, 3), colour(2, 4), colour(2, 5), colour(2, 6)) == (RED[1:], RED[1:], GREEN[1:], GREEN[1:])
    assert sheet.cell(2, 3).font.b and sheet.cell(2, 4).font.b
    assert colour(2, 7) is None and not sheet.cell(2, 7).font.b  # grade_c has no score beside it
    assert (colour(3, 3), colour(3, 4)) == (AMBER[1:], AMBER[1:])
    assert sheet.cell(2, 14).number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet.cell(3, 14).value == "not a date"
    assert sheet.freeze_panes == "B2"
    assert sheet.auto_filter.ref == "A1:R3"
    widths = _widths(sheet)
    # width = longest cell (or header) in characters, capped at 60, plus 2
    expected = {"path": 10, "status": 8, "score_a": 9, "grade_a": 9, "score_b": 9, "grade_b": 9, "grade_c": 9,
                "hist": 6, "flag": 6, "over_pct": 10, "under_pct": 11, "width": 7, "mean_residual": 15,
                "mtime": 21, "exif_datetime": 21, "error": 7, "note": 7, "ev": 5}
    assert {c: widths[j + 1] for j, c in enumerate(columns)} == expected
    info = book["metadata"]
    assert [(r[0].value, r[1].value) for r in info.iter_rows()] == [("tool", "exposure-cli"),
                                                                     ("thresholds", '{"over": 0.1}')]


def test_xlsx_metadata_sheet_widths_unescaped_text_header_border_and_inline_strings(tmp_path):
    import zipfile

    meta = {"tool": "exposure-cli", "names": ["café", "東京"], "note": "naïve"}
    n, path, book = _xlsx(tmp_path, [{"path": "é.jpg", "status": "ok"}], ["path", "status"], meta)
    info = book["metadata"]
    # the key column 20 wide, the value column 100 wide, no other column given a width
    assert _widths(info) == {1: 20, 2: 100}
    # a non-text value is JSON with its non-ASCII characters as they are, not \u escapes
    assert [(r[0].value, r[1].value) for r in info.iter_rows()] == [
        ("tool", "exposure-cli"), ("names", '["café", "東京"]'), ("note", "naïve")]
    # the header row: bold, a thin bottom border, a grey fill
    cell = book["report"]["A1"]
    assert cell.border.bottom.style == "thin" and cell.font.b
    # constant_memory mode: rows are streamed, so text is stored in the cells (inline), never in a
    # shared-string table that would hold every path in memory until the book is closed
    with zipfile.ZipFile(path) as z:
        assert "xl/sharedStrings.xml" not in z.namelist()
        sheet_xml = z.read("xl/worksheets/sheet1.xml").decode()
    assert 't="inlineStr"' in sheet_xml and "é.jpg" in sheet_xml


def test_xlsx_long_text_widths_are_capped_and_empty_sheets_keep_a_filter(tmp_path):
    n, path, book = _xlsx(tmp_path, [{"path": "x" * 100, "hist": list(range(100))}], ["path", "hist"])
    sheet = book["report"]
    assert n == 1
    assert _widths(sheet) == {1: 62, 2: 26}  # min(100, 60) + 2 and a histogram's min(…, 24) + 2
    n, path, book = _xlsx(tmp_path, [], ["path", "status"])
    assert n == 0 and book["report"].auto_filter.ref == "A1:B2"


def test_xlsx_row_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 2)
    assert write_rows([{"path": "a"}] * 2, tmp_path / "ok.xlsx", ReportFormat.xlsx, ["path"], {}) == 2
    with pytest.raises(ValueError, match="an XLSX sheet holds at most 2 rows; use --format parquet or csv"):
        write_rows([{"path": "a"}] * 3, tmp_path / "r.xlsx", ReportFormat.xlsx, ["path"], {})


def test_xlsx_reads_back_with_types(tmp_path):
    rows = [{"path": "007", "status": "ok", "width": 640, "hist": [1, 2], "mtime": "2024-01-02T03:04:05Z",
             "over_pct": 1.5, "error": None},
            {"path": "b", "status": "error", "width": None, "hist": None, "error": "boom"}]
    columns = ["path", "status", "width", "hist", "mtime", "over_pct", "error"]
    write_rows(rows, tmp_path / "r.xlsx", ReportFormat.xlsx, columns, {})
    (tmp_path / "r.meta.json").write_text('{"m": 1}')
    df, meta = read_report(tmp_path / "r.xlsx")
    assert meta == {"m": 1}
    assert df["path"].tolist() == ["007", "b"]
    assert df["hist"].tolist() == [[1, 2], None]
    assert df["mtime"].tolist()[0] == "2024-01-02T03:04:05Z"
    assert df["error"].isna().tolist() == [True, False] and df["error"][1] == "boom"
    assert str(df["width"].dtype) == "Int64" and df["width"].tolist()[0] == 640
    write_rows(rows[:1], tmp_path / "full.xlsx", ReportFormat.xlsx, columns, {})
    assert str(read_report(tmp_path / "full.xlsx")[0]["width"].dtype) == "int64"


# ------------------------------------------------------------------------------------- reading, writing


def test_read_report_finds_the_report_in_a_folder_parquet_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="no report.parquet, report.csv, report.jsonl or report.xlsx in"):
        read_report(tmp_path)
    df = pd.DataFrame({"path": ["a"], "status": ["ok"]})
    write_report(df, tmp_path / "report.csv", metadata={"which": "csv"})
    assert read_report(tmp_path)[1] == {"which": "csv"}
    write_report(df, tmp_path / "report.parquet", metadata={"which": "parquet"})
    assert read_report(tmp_path)[1] == {"which": "parquet"}
    with pytest.raises(ValueError, match=r"unknown report format: r\.txt \(expected"):
        (tmp_path / "r.txt").write_text("x")
        read_report(tmp_path / "r.txt")


def test_write_report_picks_the_format_from_the_suffix_and_writes_sidecars_beside_text_formats(tmp_path):
    df = pd.DataFrame({"path": ["a", "b"], "status": ["ok", "ok"], "over_pct": [1.0, float("nan")]})
    for name in ("r.csv", "r2.JSONL", "r3.parquet"):
        write_report(df, tmp_path / name, metadata={"n": name})
    assert (tmp_path / "r.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "r2.JSONL").read_text().splitlines()[1] == '{"path": "b", "status": "ok", "over_pct": null}'
    assert json.loads((tmp_path / "r.meta.json").read_text()) == {"n": "r.csv"}
    assert (tmp_path / "r.meta.json").read_text().endswith("}\n")
    assert json.loads((tmp_path / "r2.meta.json").read_text()) == {"n": "r2.JSONL"}
    assert not (tmp_path / "r3.meta.json").exists()
    assert read_report(tmp_path / "r3.parquet")[1] == {"n": "r3.parquet"}
    write_report(df, tmp_path / "plain", metadata=None)  # no suffix: Parquet, empty metadata
    assert (tmp_path / "plain").read_bytes()[:4] == b"PAR1" and not (tmp_path / "plain.meta.json").exists()
    write_report(df, tmp_path / "x.parquet", "csv")  # an explicit format wins over the suffix
    assert (tmp_path / "x.parquet").read_bytes().startswith(b"\xef\xbb\xbfpath,status,over_pct\n")
    assert json.loads((tmp_path / "x.meta.json").read_text()) == {}


def test_jsonl_report_reads_back_without_type_guessing(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"path": "0012", "status": "ok"}\n')
    (tmp_path / "r.json").write_text('{"path": "2024-01-01", "status": "ok"}\n')
    assert read_report(tmp_path / "r.jsonl")[0]["path"].tolist() == ["0012"]
    assert read_report(tmp_path / "r.json")[0]["path"].tolist() == ["2024-01-01"]
    assert read_report(tmp_path / "r.jsonl")[1] == {}


# ------------------------------------------------------------------------------------------ the journal


def test_journal_without_an_output_folder_reads_as_empty(tmp_path):
    from exposure_cli.outdir import Journal

    journal = Journal(tmp_path / "missing")
    assert not journal.exists() and list(journal.lines()) == [] and list(journal.rows()) == []
    assert list(journal.rows_at([("a", 0)])) == [] and not (tmp_path / "missing").exists()
    assert journal.path == tmp_path / "missing" / ".exposure" / "journal.jsonl"
    (tmp_path / "missing").mkdir()
    assert not journal.exists() and not (tmp_path / "missing" / ".exposure").exists()  # reading creates nothing


def test_journal_lines_carry_their_byte_offsets_and_stop_at_a_torn_line(tmp_path):
    from exposure_cli.outdir import Journal

    journal = Journal(tmp_path)
    journal.open()
    journal.append([{"path": "ä.jpg"}, {"path": "b.jpg"}])
    journal.close()
    with open(journal.path, "ab") as fh:
        fh.write(b'{"path": "torn')
    lines = list(journal.lines())
    first = '{"path": "ä.jpg"}\n'.encode()
    assert lines == [(0, first), (len(first), b'{"path": "b.jpg"}\n')]
    assert list(journal.rows_at([])) == []
    assert list(journal.rows_at([("b.jpg", len(first)), ("ä.jpg", 0)])) == [{"path": "b.jpg"}, {"path": "ä.jpg"}]
    assert journal.exists()


def test_journal_rows_skip_lines_that_are_not_json_objects(tmp_path):
    from exposure_cli.outdir import Journal

    (tmp_path / ".exposure").mkdir(mode=0o700)
    (tmp_path / ".exposure" / "journal.jsonl").write_bytes(b'{"path": "a"}\n[1, 2]\nnot json\n3\n{"path": "b"}\n')
    assert list(Journal(tmp_path).rows()) == [{"path": "a"}, {"path": "b"}]


@pytest.mark.parametrize("tail", [b"{", b'{"path": "torn', b"x" * 70_000, b"\n" + b"y" * 140_000])
def test_opening_the_journal_cuts_a_torn_tail_of_any_length(tmp_path, tail):
    from exposure_cli.outdir import Journal

    journal = Journal(tmp_path)
    journal.open()
    journal.append([{"path": "a.jpg"}])
    journal.close()
    whole = journal.path.read_bytes()
    with open(journal.path, "ab") as fh:
        fh.write(tail)
    keep = len(whole) + (tail.rfind(b"\n") + 1 if b"\n" in tail else 0)
    journal.open()
    assert journal.path.stat().st_size == keep
    journal.append([{"path": "b.jpg"}])
    journal.close()
    assert [r["path"] for r in journal.rows()] == ["a.jpg", "b.jpg"]


def test_a_journal_that_is_all_torn_is_cut_to_nothing(tmp_path):
    from exposure_cli.outdir import Journal

    (tmp_path / ".exposure").mkdir(mode=0o700)
    (tmp_path / ".exposure" / "journal.jsonl").write_bytes(b"z" * 70_000)
    journal = Journal(tmp_path)
    journal.open()
    assert journal.path.stat().st_size == 0 and not journal.exists()
    journal.append([])  # nothing to write: no empty line either
    assert journal.path.stat().st_size == 0
    journal.close()
    journal.close()  # twice is fine


def test_an_intact_journal_is_left_as_it_is_when_opened(tmp_path):
    from exposure_cli.outdir import Journal

    journal = Journal(tmp_path)
    journal.open()
    journal.append([{"path": "a.jpg"}])
    journal.close()
    before = journal.path.read_bytes()
    journal.open()
    journal.close()
    assert journal.path.read_bytes() == before


def test_append_needs_an_open_journal(tmp_path):
    from exposure_cli.outdir import Journal

    with pytest.raises(AssertionError, match="^journal not open$"):
        Journal(tmp_path).append([{"path": "a"}])


def test_close_releases_the_descriptors_the_journal_opened(tmp_path):
    from exposure_cli.outdir import Journal

    journal = Journal(tmp_path)
    journal.open()
    fds = (journal._fd, journal._state_fd)
    journal.close()
    assert journal._fd is None and journal._state_fd is None
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


# -------------------------------------------------------------- cases added for the writers' survivors


def test_reading_xlsx_without_openpyxl_names_the_extra(tmp_path, monkeypatch):
    import sys

    write_rows([{"path": "a"}], tmp_path / "r.xlsx", ReportFormat.xlsx, ["path"], {})
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl → ImportError
    with pytest.raises(writers.MissingExtraError) as info:
        read_report(tmp_path / "r.xlsx")
    assert str(info.value) == "reading an XLSX report needs openpyxl: pip install 'exposure-cli[xlsx]'"


def test_xlsx_text_that_looks_missing_or_numeric_stays_text(tmp_path):
    rows = [{"path": "NA", "status": "ok", "error": "null"}, {"path": "nan", "status": "ok", "error": 5},
            {"path": "None", "status": "error", "error": None}]
    write_rows(rows, tmp_path / "r.xlsx", ReportFormat.xlsx, ["path", "status", "error"], {})
    df, _ = read_report(tmp_path / "r.xlsx")
    assert df["path"].tolist() == ["NA", "nan", "None"]
    assert df["error"].tolist()[:2] == ["null", "5"] and df["error"].isna().tolist() == [False, False, True]


def test_write_report_turns_nan_into_missing_values_and_reads_upper_case_suffixes(tmp_path):
    df = pd.DataFrame({"path": ["a", "b"], "status": ["ok", "error"], "error": [None, float("nan")],
                       "over_pct": [1.5, float("nan")]})
    write_report(df, tmp_path / "r.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column("error").to_pylist() == [None, None]  # missing, not the text "nan"
    assert table.column("over_pct").to_pylist() == [1.5, None]
    write_report(df, tmp_path / "r.XLSX")
    assert (tmp_path / "r.XLSX").read_bytes()[:2] == b"PK"  # an XLSX (zip), from the upper-case suffix


def test_sidecar_text_is_indented_utf8_json_with_a_final_newline(tmp_path):
    df = pd.DataFrame({"path": ["a"], "status": ["ok"]})
    write_report(df, tmp_path / "r.csv", metadata={"a": "ü", "b": [1]})
    assert (tmp_path / "r.meta.json").read_text(encoding="utf-8") == '{\n  "a": "ü",\n  "b": [\n    1\n  ]\n}\n'


def test_writing_xlsx_without_xlsxwriter_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "xlsxwriter", None)
    with pytest.raises(writers.MissingExtraError) as info:
        write_rows([{"path": "a"}], tmp_path / "r.xlsx", ReportFormat.xlsx, ["path"], {})
    assert str(info.value) == "--format xlsx needs XlsxWriter: pip install 'exposure-cli[xlsx]'"


def test_row_to_json_gives_every_kind_of_value_as_before_its_fast_path():
    """row_to_json skips _jsonable's checks for exact floats, strings, ints, bools and None (issue 18);
    subclasses, numpy values and text to clean still go through it."""
    class Num(float):
        pass

    class Text(str):
        pass

    row = {"f": 0.25, "nan": float("nan"), "inf": float("-inf"), "s": "a\udcffb", "i": 3, "b": True, "n": None,
           "np": np.float32(0.5), "npnan": np.float64("nan"), "arr": np.array([1, 2]), "l": [1, 2],
           "sub": Num(1.5), "subnan": Num("nan"), "subs": Text("x"), "k\udcfe": "ok"}
    assert row_to_json(row) == (
        '{"f": 0.25, "nan": null, "inf": -Infinity, "s": "a\\\\xffb", "i": 3, "b": true, "n": null, "np": 0.5, '
        '"npnan": NaN, "arr": [1, 2], "l": [1, 2], "sub": 1.5, "subnan": null, "subs": "x", "k\\\\xfe": "ok"}')
    assert row_to_json(row) == row_to_json(dict(row))  # the second time from the cleaned-key cache


def test_arrow_table_casts_only_what_is_not_already_the_column_type():
    import pyarrow as pa

    from exposure_cli.report.schema import arrow_schema

    schema = arrow_schema(["path", "width", "bad_pct", "hist"])
    rows = [{"path": "a", "width": 3, "bad_pct": 1.5, "hist": [1, 2]},
            {"path": np.str_("b"), "width": np.int64(4), "bad_pct": 2, "hist": np.array([3])},
            {"path": 5, "width": 5.0, "bad_pct": np.float32(0.5), "hist": None},
            {"width": True, "bad_pct": None}]
    table = writers._arrow_table(rows, schema)
    assert table.schema.equals(schema)
    got = table.to_pylist()
    assert got == [{"path": "a", "width": 3, "bad_pct": 1.5, "hist": [1, 2]},
                   {"path": "b", "width": 4, "bad_pct": 2.0, "hist": [3]},
                   {"path": "5", "width": 5, "bad_pct": 0.5, "hist": None},
                   {"path": None, "width": 1, "bad_pct": None, "hist": None}]
    assert [type(r["bad_pct"]) for r in got[:3]] == [float, float, float]
    assert pa.types.is_integer(table.schema.field("width").type)


# --- issue 17, fourth sitting: written from the survivors of `tools/mutation.py writers-tabular`


def test_row_to_json_cleans_and_caches_column_names_it_has_not_seen(monkeypatch):
    """Column names are cleaned once and remembered, at most 4096 of them; a name seen for the first time
    (not yet remembered) is written as cleaned text, never as null."""
    cache: dict[str, str] = {}
    monkeypatch.setattr(writers, "_CLEAN_KEYS", cache)
    # an undecodable byte (a lone surrogate from the file system) reads as the text \xff
    assert json.loads(row_to_json({"fresh_column": 1, "bad\udcffname": "x"})) == {"fresh_column": 1, "bad\\xffname": "x"}
    assert cache == {"fresh_column": "fresh_column", "bad\udcffname": "bad\\xffname"}
    assert json.loads(row_to_json({"bad\udcffname": 2})) == {"bad\\xffname": 2}  # from the cache
    many = {f"c{i}": i for i in range(5000)}
    assert json.loads(row_to_json(many)) == many
    assert len(cache) == 4096


def test_a_parquet_file_without_our_metadata_reads_back_with_empty_metadata(tmp_path):
    pd.DataFrame({"path": ["a.jpg"], "status": ["ok"]}).to_parquet(tmp_path / "other.parquet")
    df, meta = read_report(tmp_path / "other.parquet")
    assert meta == {} and df["path"].tolist() == ["a.jpg"]


def test_csv_text_columns_stay_text_behind_the_byte_order_mark(tmp_path):
    """The header is read without its byte-order mark, so 'path' (the first column) is known as text and a
    path that looks like a number keeps its zeros."""
    df = pd.DataFrame({"path": ["0012", "7"], "status": ["ok", "ok"]})
    write_report(df, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_bytes().startswith(b"\xef\xbb\xbfpath,")
    back, _ = read_report(tmp_path / "r.csv")
    assert list(back.columns) == ["path", "status"]
    assert back["path"].tolist() == ["0012", "7"]


def test_csv_missing_values_come_back_missing_and_text_that_looks_missing_stays_text(tmp_path):
    df = pd.DataFrame({"path": ["NA", "null"], "status": ["ok", "error"], "error": [None, "N/A"],
                       "over_pct": [1.5, float("nan")]})
    write_report(df, tmp_path / "r.csv")
    back, _ = read_report(tmp_path / "r.csv")
    assert back["path"].tolist() == ["NA", "null"]
    assert pd.isna(back["error"][0]) and back["error"][1] == "N/A"
    assert back["over_pct"].dtype == np.float64
    assert back["over_pct"][0] == 1.5 and math.isnan(back["over_pct"][1])


def test_an_empty_csv_report_is_an_empty_data_error(tmp_path):
    (tmp_path / "r.csv").write_bytes(b"")
    with pytest.raises(pd.errors.EmptyDataError):
        read_report(tmp_path / "r.csv")


def test_parquet_reports_are_zstd_compressed(tmp_path):
    import pyarrow.parquet as pq

    write_rows([{"path": "a.jpg", "status": "ok"}], tmp_path / "r.parquet", ReportFormat.parquet, ["path", "status"], {})
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    assert {meta.row_group(0).column(j).compression for j in range(meta.num_columns)} == {"ZSTD"}


# --- issue 17, fourth sitting: written from the survivors of `tools/mutation.py journal`


def test_a_journal_of_one_byte_exists(tmp_path):
    from exposure_cli.outdir import Journal

    (tmp_path / ".exposure").mkdir()
    (tmp_path / ".exposure" / "journal.jsonl").write_bytes(b"\n")
    assert Journal(tmp_path).exists()


def test_a_journal_refuses_links_and_files_where_its_folders_should_be(tmp_path):
    from exposure_cli.errors import ScanError
    from exposure_cli.outdir import Journal

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError) as not_a_folder:
        Journal(a_file).open()
    assert not_a_folder.value.filename == str(a_file)  # the error names the output folder given
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(tmp_path, linked / ".exposure")
    with pytest.raises(ScanError) as info:
        Journal(linked).open()
    assert str(info.value).startswith(f"{linked / '.exposure'} was not created by exposure-cli (it is a symbolic link)")
    inner = tmp_path / "inner"
    (inner / ".exposure").mkdir(parents=True)
    os.symlink(tmp_path / "nowhere", inner / ".exposure" / "journal.jsonl")
    with pytest.raises(ScanError) as info:
        Journal(inner).open()
    assert str(info.value).startswith(f"{inner / '.exposure' / 'journal.jsonl'} is a symbolic link;")


def test_a_failed_append_raises_the_write_error_even_when_cutting_back_fails(tmp_path, monkeypatch):
    import errno

    from exposure_cli import outdir

    journal = outdir.Journal(tmp_path)
    journal.open()
    journal.append([{"path": "a"}])
    size = os.path.getsize(tmp_path / ".exposure" / "journal.jsonl")
    real_write, real_truncate = os.write, os.ftruncate

    def full(fd, data):
        if fd == journal._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def stuck(fd, length):
        if fd == journal._fd:
            raise OSError(errno.EIO, "I/O error")
        return real_truncate(fd, length)

    monkeypatch.setattr(outdir.os, "write", full)
    with pytest.raises(OSError) as info:
        journal.append([{"path": "b"}])
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(outdir.os, "ftruncate", stuck)
    with pytest.raises(OSError) as info:
        journal.append([{"path": "c"}])
    assert info.value.errno == errno.ENOSPC  # the cause, not the failed clean-up
    monkeypatch.undo()
    journal.close()
    assert os.path.getsize(tmp_path / ".exposure" / "journal.jsonl") == size


def test_a_torn_tail_that_spans_a_whole_read_block_is_cut_back_to_the_first_newline(tmp_path):
    """The tail is searched backwards 64 KiB at a time; here the only newline is the file's first byte and
    the rest is exactly one block."""
    from exposure_cli.outdir import Journal

    (tmp_path / ".exposure").mkdir()
    path = tmp_path / ".exposure" / "journal.jsonl"
    path.write_bytes(b"\n" + b"y" * (1 << 16))
    journal = Journal(tmp_path)
    journal.open()
    journal.close()
    assert path.read_bytes() == b"\n"


def test_a_journal_uses_the_state_folder_it_is_given_and_closes_what_is_already_gone(tmp_path):
    from exposure_cli.outdir import Journal

    first = Journal(tmp_path)
    first.open()
    first.append([{"path": "a"}])
    first.close()
    state_fd = os.open(tmp_path / ".exposure", os.O_RDONLY)
    try:
        elsewhere = Journal(tmp_path / "not-here", state_fd=state_fd)  # the descriptor, not the path, is used
        assert elsewhere.exists()
        assert [row["path"] for row in elsewhere.rows()] == ["a"]
    finally:
        os.close(state_fd)
    journal = Journal(tmp_path)
    journal.open()
    os.close(journal._fd)  # both descriptors closed behind the journal's back: closing it still works
    os.close(journal._own_state_fd)
    journal.close()
    assert journal._fd is None and journal._own_state_fd is None and journal._state_fd is None
