"""``exposure rules list | show | validate | explain`` through the CLI runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from exposure_cli import rules, stats
from exposure_cli.cli import app
from exposure_cli.report.writers import write_report

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_list_shows_the_six_presets():
    result = invoke("rules", "list")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    for preset in rules.PRESETS:
        assert preset in names
    assert "Portrait-first" in result.output


def test_show_prints_rows_and_source():
    result = invoke("rules", "show", "landscape-strict")
    assert result.exit_code == 0
    assert "mode: table" in result.output
    assert "when global.bad_pct < 2" in result.output
    assert "otherwise  # mostly clipped" in result.output
    source = invoke("rules", "show", "night", "--source")
    assert source.exit_code == 0
    assert source.output.startswith("# Night scene")
    unknown = invoke("rules", "show", "nigth")
    assert unknown.exit_code == 2 and "did you mean 'night'" in unknown.output


def test_validate_good_and_bad_files(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "good"\n[[deductions]]\nwhen = "global.over_pct >= 20"\npoints = 10\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n\n[[rows]]\nscore = 90\nwhen = "subject.bad_pc < 5"\n')
    result = invoke("rules", "validate", str(good))
    assert result.exit_code == 0
    assert f"✓ {good}: rule set 'good', 1 deductions" in result.output
    result = invoke("rules", "validate", str(good), str(bad))
    assert result.exit_code == 1
    assert f"✗ {bad}:5, rows[0].when, column 1: unknown metric 'subject.bad_pc'" in result.output
    assert "did you mean 'subject.bad_pct'" in result.output


def test_explain_one_photo(tmp_path):
    rows = []
    for name, over_rows in (("beach/sunny.jpg", 23), ("beach/dark.jpg", 0)):
        residual = np.zeros((100, 100), np.float32)
        residual[:over_rows] = -0.5
        row = stats.image_stats(residual, {}, stats.Thresholds())
        row.update(path=name, status="ok", error=None, width=100, height=100)
        rows.append(row)
    rows.append({"path": "beach/broken.jpg", "status": "error", "error": "cannot decode"})
    report = tmp_path / "report.parquet"
    write_report(pd.DataFrame(rows), report, "parquet",
                 {"thresholds": stats.Thresholds().as_dict(), "rule_sets": ["landscape-strict"]})
    result = invoke("rules", "explain", str(report), "sunny.jpg")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "beach/sunny.jpg"
    used = [line for line in lines if line.strip().startswith("USED")]
    assert len(used) == 1 and "rows[3] (about 20 % bad)" in used[0]
    assert any("✗ global bad area 23 % < 2 %" in line for line in lines)
    assert any("true " in line and "rows[5]" in line for line in lines)  # holds, but a row above decided
    assert lines[-1].strip() == "= 40 (D): global bad area 23 % < 25 % → 40 (about 20 % bad)"

    vendor = tmp_path / "vendor.toml"
    vendor.write_text('name = "vendor-a"\n[[deductions]]\nwhen = "global.over_pct >= 20"\npoints = 10\n')
    result = invoke("rules", "explain", str(report), "beach/sunny.jpg", "--rules", str(vendor))
    assert "USED     −10  deductions[0]: global.over_pct >= 20" in result.output
    assert "= 90 (A): global over-exposed area 23 % ≥ 20 % → −10" in result.output

    result = invoke("rules", "explain", str(report), "broken.jpg")
    assert "not scored" in result.output and "cannot decode" in result.output
    result = invoke("rules", "explain", str(report), "beach/sunny.jpeg")
    assert result.exit_code == 2 and "did you mean 'beach/sunny.jpg'" in result.output
    result = invoke("rules", "explain", str(report), ".jpg")
    assert result.exit_code == 2


@pytest.mark.parametrize("command", [["rules", "list"], ["rules", "show"], ["rules", "validate"],
                                     ["rules", "explain"], ["rescore"], ["report"], ["rules"]])
def test_every_command_has_help_with_examples(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output


def test_docs_describe_every_preset_metric_and_policy():
    from pathlib import Path

    from exposure_cli.rules.ruleset import MISSING_POLICIES
    from exposure_cli.stats import REGION_METRICS

    text = (Path(__file__).resolve().parents[1] / "docs" / "RULES.md").read_text(encoding="utf-8")
    for preset in rules.PRESETS:
        assert f"| `{preset}` |" in text, preset
    for metric in REGION_METRICS:
        assert f"`{metric}`" in text, metric
    for policy in MISSING_POLICIES:
        assert f"`{policy}`" in text, policy
    for command in ("rules explain", "rules validate", "rescore", "report"):
        assert f"exposure {command}" in text, command
