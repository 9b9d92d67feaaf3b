"""Reports in a real spreadsheet program: LibreOffice Calc, headless, opens our CSV and XLSX files.

LibreOffice converts each report to XLSX (or re-saves ours); openpyxl then reads the cells it produced —
their types (text, number, date, formula), colours, frozen panes and filter — so what is checked is what
LibreOffice made of our files, not what we meant to write. Debian: ``apt-get install -y
libreoffice-calc-nogui`` (``.ci/run`` installs it); the tests skip with that reason where ``soffice`` is
absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.report.writers import escape_formula, read_report, unescape_formula

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
needs_soffice = pytest.mark.skipif(
    SOFFICE is None, reason="LibreOffice not installed (apt-get install -y libreoffice-calc-nogui)")
openpyxl = pytest.importorskip("openpyxl", reason="the xlsx extra (openpyxl) is not installed")

#: File names a spreadsheet would run as formulas (OWASP CSV injection), plus one already quoted.
HOSTILE = ["=1+1.jpg", "+2+3.jpg", "-4+5.jpg", "@SUM(1).jpg", "'quoted.jpg"]


def convert(files: list[Path], out_dir: Path, fmt: str, infilter: str | None = None,
            env: dict | None = None) -> list[Path]:
    """LibreOffice converts `files` to `fmt` in `out_dir` (a private profile keeps runs independent)."""
    profile = out_dir / "profile"
    cmd = [SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore"]
    if infilter:
        cmd.append(f"--infilter={infilter}")
    cmd += ["--convert-to", fmt, "--outdir", str(out_dir), *map(str, files)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    outs = [out_dir / (f.stem + "." + fmt.split(":")[0]) for f in files]
    missing = [o for o in outs if not o.exists()]
    assert not missing, (missing, done.stdout, done.stderr)
    return outs


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """One real scan (baseline model) written as Parquet, CSV and XLSX, with hostile file names."""
    pytest.importorskip("xlsxwriter", reason="the xlsx extra (XlsxWriter) is not installed")
    root = tmp_path_factory.mktemp("sheets")
    photos = root / "photos"
    for i, name in enumerate(HOSTILE + ["well.jpg"]):
        write_image(photos / name, photo_like(60, 80, seed=i, gain=[1, 6, 0.1, 1, 3, 1][i]))
    outs = {}
    for fmt in ("parquet", "csv", "xlsx"):
        res = CliRunner().invoke(app, ["scan", str(photos), "--out", str(root / fmt), "--format", fmt,
                                       "--model", "baseline", "--no-regions", "-q"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        outs[fmt] = root / fmt / f"report.{fmt}"
    return root, outs


def _cells(path: Path):
    sheet = openpyxl.load_workbook(path).worksheets[0]
    rows = list(sheet.iter_rows())
    # LibreOffice's headless default import reads the file as Windows-1252 (its GUI import dialog detects
    # the byte-order mark; the headless import does not), so the mark shows up in the first header cell.
    header = [str(c.value).replace("\u00ef\u00bb\u00bf", "").lstrip("\ufeff") for c in rows[0]]
    return sheet, header, rows[1:]


def test_escape_formula_round_trips_and_defuses_every_trigger():
    for text in ["=1+1", "+1", "-1", "@x", "\tx", "\rx", "'x", "''", "'", "plain", "", "a=b", "−16 (U+2212)"]:
        escaped = escape_formula(text)
        assert unescape_formula(escaped) == text
        assert not escaped or escaped[0] not in "=+-@\t\r"


def test_our_readers_round_trip_csv_and_xlsx(scanned):
    _, outs = scanned
    reference, _ = read_report(outs["parquet"])
    for fmt in ("csv", "xlsx"):
        df, meta = read_report(outs[fmt])
        assert list(df.columns) == list(reference.columns), fmt
        for column in ("path", "status", "mtime", "grade_default", "reasons_default", "format"):
            assert list(df[column]) == list(reference[column]), (fmt, column)
        assert sorted(df["path"]) == sorted(HOSTILE + ["well.jpg"])
        assert df["score_default"].round(9).tolist() == reference["score_default"].round(9).tolist()
        assert df["width"].tolist() == reference["width"].tolist() and df["width"].dtype.kind == "i"
        assert [list(h) for h in df["hist"]] == [list(h) for h in reference["hist"]]
        assert meta["rule_sets"] == ["default"]


def test_csv_starts_with_a_bom_and_writes_mtime_as_a_date(scanned):
    _, outs = scanned
    raw = outs["csv"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with it
    line = raw.decode("utf-8-sig").splitlines()[1]
    assert "Z," not in line and "T" in line  # mtime as YYYY-MM-DDTHH:MM:SS, no zone letter


@needs_soffice
def test_libreoffice_opens_the_csv_as_text_numbers_and_dates_never_formulas(scanned, tmp_path):
    """LibreOffice's default CSV import runs formulas: `=1+1.jpg` unescaped comes back as a formula cell."""
    _, outs = scanned
    (converted,) = convert([outs["csv"]], tmp_path / "default", "xlsx")
    sheet, header, rows = _cells(converted)
    col = {name: i for i, name in enumerate(header)}
    paths = [r[col["path"]] for r in rows]
    assert all(c.data_type == "s" for c in paths), [(c.value, c.data_type) for c in paths]
    shown = sorted(c.value.lstrip("'") for c in paths)
    assert shown == sorted(h.lstrip("'") for h in HOSTILE + ["well.jpg"])
    assert all(r[col["mtime"]].is_date for r in rows), [r[col["mtime"]].value for r in rows]
    assert all(r[col["score_default"]].data_type == "n" for r in rows)
    assert all(r[col["width"]].value == 80 for r in rows)
    formulas = [c.value for r in rows for c in r if c.data_type == "f"]
    assert not formulas, formulas
    # The same file with the charset a UTF-8 desktop uses: every reason arrives intact (≥ → −).
    (utf8,) = convert([outs["csv"]], tmp_path / "utf8", "xlsx", infilter="CSV:44,34,SYSTEM,1",
                      env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    _, header, rows = _cells(utf8)
    reference, _ = read_report(outs["parquet"])
    reasons = sorted(r[header.index("reasons_default")].value for r in rows)
    assert reasons == sorted(reference["reasons_default"]) and any("≥" in r or "<" in r for r in reasons)


@needs_soffice
def test_libreoffice_opens_the_xlsx_typed_frozen_filtered_and_coloured(scanned, tmp_path):
    _, outs = scanned
    # LibreOffice loads our workbook and saves it again: what it kept is what it understood.
    resaved_dir = tmp_path / "resaved"
    resaved_dir.mkdir()
    source = resaved_dir / "ours.xlsx"
    shutil.copy(outs["xlsx"], source)
    (resaved,) = convert([source], tmp_path / "lo", "xlsx:Calc MS Excel 2007 XML")
    sheet, header, rows = _cells(resaved)
    col = {name: i for i, name in enumerate(header)}
    # The frozen header lives in the view, which headless LibreOffice has none of (it saves a default
    # view); openpyxl reads it from our file instead.
    ours = openpyxl.load_workbook(outs["xlsx"]).worksheets[0]
    assert ours.freeze_panes == "B2" and ours.sheet_view.pane.state == "frozen"
    assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:")
    paths = [r[col["path"]] for r in rows]
    assert all(c.data_type == "s" for c in paths) and sorted(c.value for c in paths) == sorted(HOSTILE + ["well.jpg"])
    assert not [c.value for r in rows for c in r if c.data_type == "f"]
    assert all(r[col["mtime"]].is_date for r in rows)
    assert all(r[col["size_bytes"]].data_type == "n" and r[col["over_pct"]].data_type == "n" for r in rows)
    # scores coloured as on the HTML page: below 50 red, below 80 amber, else green
    for r in rows:
        score = r[col["score_default"]]
        expected = "DD2233" if score.value < 50 else "BB7700" if score.value < 80 else "22AA77"
        assert score.font.color is not None and score.font.color.rgb.endswith(expected), (score.value, score.font.color)
        assert r[col["grade_default"]].font.color.rgb.endswith(expected)
    # widths fit: the path column is at least as wide as the longest name, the header never cut
    letter = openpyxl.utils.get_column_letter
    width = sheet.column_dimensions[letter(col["path"] + 1)].width
    assert width >= max(len(h) for h in HOSTILE)
    assert sheet.column_dimensions[letter(col["severe_under_pct"] + 1)].width >= len("severe_under_pct")
    # and as text, converted by LibreOffice: no cell was evaluated
    (as_csv,) = convert([source], tmp_path / "csv", "csv:Text - txt - csv (StarCalc):44,34,76,1")
    text = as_csv.read_text(encoding="utf-8")
    for name in HOSTILE:
        assert name in text


def test_csv_on_stdout_has_a_bom_in_a_file_and_none_in_a_pipe(tmp_path):
    """`exposure scan - --out - --format csv > report.csv` makes a file a spreadsheet opens right; a pipe
    to another program gets plain UTF-8."""
    import sys

    write_image(tmp_path / "p" / "a.jpg", photo_like(60, 80))
    cmd = [sys.executable, "-m", "exposure_cli", "scan", str(tmp_path / "p"), "--out", "-", "--format", "csv",
           "--model", "baseline", "--no-regions", "-q"]
    with open(tmp_path / "report.csv", "wb") as fh:
        assert subprocess.run(cmd, stdout=fh, timeout=300).returncode == 0
    piped = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=300)
    assert piped.returncode == 0
    assert (tmp_path / "report.csv").read_bytes().startswith(b"\xef\xbb\xbfpath,")
    assert piped.stdout.startswith(b"path,")
