"""The command line as a user meets it: exit codes, help text, one-line errors, scores by default, the summary.

Every test runs the real ``exposure`` command (Typer's runner in-process, or a real process where the exit
status of the process itself is the point).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.commands.ui import format_stops
from exposure_cli.commands.scan import (EXIT_ALL_FAILED, EXIT_FAILED, EXIT_NOTHING_FOUND, EXIT_OK, EXIT_USAGE)
from exposure_cli.report.writers import read_report

FAST = ["--model", "baseline", "--no-regions"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    out = [[]]
    for name, cmd in group.commands.items():
        sub = getattr(cmd, "commands", None)
        out.append([name])
        out += [[name, s] for s in (sub or {})]
    return out


# ------------------------------------------------------------------------------------------ exit codes


def test_exit_code_2_for_a_named_input_that_does_not_exist(tmp_path, photo_dir):
    res = run("scan", photo_dir, tmp_path / "no_such_folder", "--out", tmp_path / "o", *FAST, "-q")
    assert res.exit_code == EXIT_USAGE == 2
    assert "no_such_folder: no such file or folder" in res.output
    assert not (tmp_path / "o").exists()  # refused before any work


def test_exit_code_3_when_no_photos_are_found(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    res = run("scan", tmp_path / "empty", "--out", tmp_path / "o", *FAST)
    assert res.exit_code == EXIT_NOTHING_FOUND == 3
    assert "no photos found in" in res.output


def test_exit_code_4_when_every_input_failed(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    (bad / "b.png").write_bytes(b"")
    res = run("scan", bad, "--out", tmp_path / "o", *FAST)
    assert res.exit_code == EXIT_ALL_FAILED == 4
    assert "every file scanned failed (2 of 2)" in res.output
    df, _ = read_report(tmp_path / "o")
    assert list(df["status"]) == ["error", "error"]  # the report still says why


def test_exit_codes_0_and_1(photo_dir, tmp_path):
    assert run("scan", photo_dir, "--out", tmp_path / "a", *FAST, "-q").exit_code == EXIT_OK == 0
    failing = run("scan", photo_dir, "--out", tmp_path / "b", *FAST, "-q", "--fail-on-error")
    assert failing.exit_code == EXIT_FAILED == 1
    below = run("scan", photo_dir, "--out", tmp_path / "c", *FAST, "--fail-under", "default=101")
    assert below.exit_code == 1 and "score below 101 on default" in below.output


def test_a_real_process_exits_with_the_documented_codes(tmp_path):
    """The codes reach the shell (not only Typer's runner): the same table the README shows."""
    (tmp_path / "empty").mkdir()
    cmd = [sys.executable, "-m", "exposure_cli", "scan", "--model", "baseline", "--no-regions", "-q"]
    missing = subprocess.run(cmd + [str(tmp_path / "nope"), "--out", str(tmp_path / "o1")],
                             capture_output=True, text=True, timeout=300)
    empty = subprocess.run(cmd + [str(tmp_path / "empty"), "--out", str(tmp_path / "o2")],
                           capture_output=True, text=True, timeout=300)
    usage = subprocess.run(cmd + [str(tmp_path), "--format", "xls"], capture_output=True, text=True, timeout=300)
    assert (missing.returncode, empty.returncode, usage.returncode) == (2, 3, 2), (missing.stderr, empty.stderr)


def test_readme_lists_every_exit_code():
    from pathlib import Path

    from exposure_cli.commands import scan as scan_module

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = {v for k, v in vars(scan_module).items() if k.startswith("EXIT_")}
    for code in codes:
        assert re.search(rf"^\| `{code}` \|", table, re.M), f"exit code {code} missing from the README table"


# ------------------------------------------------------------------------------------------ help and errors


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "exposure")
def test_help_shows_no_type_labels(command):
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    labels = re.findall(r"<(?:bool|str|int|float|path|list\[[^\]]*\]|int range|float range)>", res.output)
    assert not labels, f"type labels in --help: {labels}"
    assert "{" not in res.output.split("\n", 3)[1]  # the usage line names arguments plainly
    for line in res.output.splitlines():  # a plain flag is followed by its help, nothing else
        if "--help" in line:
            assert re.search(r"--help\s+-h\s+Show this message", line), line


def test_usage_errors_are_one_line_without_pydantic_prefixes(photo_dir):
    res = CliRunner().invoke(app, ["scan", str(photo_dir), "--format", "xls"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Value error" not in lines[0] and "'xls' is not one of" in lines[0]
    assert lines[0].startswith("Error: ") and "exposure scan --help" in lines[0]
    bad_number = CliRunner().invoke(app, ["scan", str(photo_dir), "--batch-size", "0"])
    assert bad_number.exit_code == 2 and len(bad_number.output.strip().splitlines()) == 1
    unknown = CliRunner().invoke(app, ["scna"])
    assert unknown.exit_code == 2 and "No such command 'scna'" in unknown.output


# ------------------------------------------------------------------------------------------ scores by default


def test_scores_by_default_and_the_summary_names_the_worst_photos(photo_dir, tmp_path):
    res = run("scan", photo_dir, "--out", tmp_path / "o", *FAST)
    assert res.exit_code == 0, res.output
    df, meta = read_report(tmp_path / "o")
    assert meta["rule_sets"] == ["default"]
    ok = df[df["status"] == "ok"]
    assert ok["score_default"].notna().all() and ok["grade_default"].str.len().gt(0).all()
    assert "lowest scores (default" in res.output
    worst = ok.sort_values("score_default").iloc[0]
    line = next(ln for ln in res.output.splitlines() if worst["path"].split("/")[-1] in ln)
    assert f"{worst['score_default']:.0f}" in line and worst["grade_default"] in line
    assert worst["ev_correction"] == worst["ev_correction"]  # not NaN: the analyzer gives a correction
    assert format_stops(worst["ev_correction"]) in line  # the stops that would fix it
    first_reason = worst["reasons_default"].split("; ")[0]
    assert first_reason.split(" → ")[0][:20] in res.output.replace("\n", " ").replace("│", " ")


def test_no_rules_and_named_rules(photo_dir, tmp_path):
    none = run("scan", photo_dir, "--out", tmp_path / "none", *FAST, "-q", "--no-rules")
    assert none.exit_code == 0
    df, meta = read_report(tmp_path / "none")
    assert meta["rule_sets"] == [] and not [c for c in df.columns if c.startswith("score_")]
    named = run("scan", photo_dir, "--out", tmp_path / "named", *FAST, "-q", "--rules", "night")
    assert named.exit_code == 0
    df, meta = read_report(tmp_path / "named")
    assert meta["rule_sets"] == ["night"] and "score_default" not in df.columns
    both = run("scan", photo_dir, "--out", tmp_path / "x", *FAST, "--no-rules", "--rules", "night")
    assert both.exit_code == 2


def test_progress_and_summary_show_one_speed(tmp_path):
    for i in range(6):
        write_image(tmp_path / "p" / f"{i}.jpg", photo_like(60, 80, seed=i))
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "p"), "--out", str(tmp_path / "o"), *FAST,
                                   "--batch-size", "2"], env={"COLUMNS": "160"}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    bar = re.findall(r"6/6\s+([\d.]+) img/s", res.output)
    summary = re.findall(r"6 \(([\d.]+) img/s", res.output)
    assert bar and summary, res.output
    assert bar[-1] == summary[0], res.output


# ------------------------------------------------------------------------------------------ the README


def _readme_blocks() -> list[str]:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)```", readme, re.S)


def test_readme_install_blocks_carry_the_torch_note_inside_them():
    """Copying a code block alone must not pull a multi-GB CUDA torch."""
    installs = [b for b in _readme_blocks() if "pip install" in b and "-e '.[" in b or "pip install torch" in b]
    assert len(installs) >= 2
    for block in installs:
        assert "torch==2.13.0" in block, block
        assert block.index("torch==2.13.0") < block.index("pip install -e") if "pip install -e" in block else True


def test_readme_first_command_shows_scores(tmp_path):
    """The README's first scan command, as written (the shipped model and the shipped samples)."""
    import shlex

    from exposure_cli.commands.samples import samples_dir

    first = _readme_blocks()[0]
    command = first[first.index("exposure scan"):].strip()
    args = shlex.split(command.replace('"$(exposure samples)"', shlex.quote(str(samples_dir()))))[1:]
    args[args.index("--out") + 1] = str(tmp_path / "audit")
    res = CliRunner().invoke(app, args, env={"COLUMNS": "120"}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "lowest scores (default" in res.output
    assert re.search(r"│\s+\d+\s+│\s+[ABCDF]\s+│\s+\S", res.output), res.output  # score, grade, a reason
    df, _ = read_report(tmp_path / "audit")
    assert df["score_default"].notna().all() and df["overlay_path"].notna().all()


def test_stops_are_written_as_a_photographer_writes_them():
    assert format_stops(1.26) == "+1.3 EV"
    assert format_stops(-0.74) == "\u22120.7 EV"
    assert format_stops(0.04) == format_stops(-0.04) == "0.0 EV"
    assert format_stops(float("nan")) == "\u2013"
