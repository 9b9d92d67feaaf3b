"""``exposure rescore``: new rule sets on an existing report give exactly what scoring during the scan gives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from exposure_cli import rules, stats
from exposure_cli.cli import app
from exposure_cli.report.writers import read_report, write_report

SCAN = stats.Thresholds()

OTHER_THRESHOLDS = """
name = "acme"
description = "stricter pixels than the scan"
on_missing_region = "use_global"
[thresholds]
over = 0.05
under = 0.175
[[deductions]]
when = "global.over_pct >= 20"
points = 10
label = "over-exposed"
[[deductions]]
when = "face.under_pct > 5"
points = "min(40, face.under_pct)"
"""


def generated_maps(count: int = 12, seed: int = 3) -> list[tuple[np.ndarray, dict, dict]]:
    """(residual map, region masks, file facts) per generated photo; the same every call."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = 60, 80
        y, x = np.mgrid[0:h, 0:w]
        residual = (rng.normal(0, 0.15) + 0.3 * np.sin(x / rng.uniform(5, 20)) * np.cos(y / rng.uniform(5, 20))
                    + rng.normal(0, 0.05, (h, w))).astype(np.float32)
        residual = np.clip(residual, -1, 1)
        face = np.zeros((h, w), bool)
        if i % 3:
            face[10:25, 30:45] = True
        person = face.copy()
        if i % 3:
            person[25:60, 20:55] = True
        subject = person | (np.hypot(y - 30, x - 40) < 15)
        masks = {"face": face if face.any() else None, "person": person if person.any() else None,
                 "subject": subject, "background": ~subject, "sky": None}
        facts = dict(path=f"shots/img_{i:02d}.jpg", status="ok", error=None, width=w, height=h,
                     exif_iso=float(rng.choice([100, 800])), exif_exposure_time=1 / 250)
        out.append((residual, masks, facts))
    return out


def generated_rows(count: int = 12, seed: int = 3) -> list[dict]:
    """Report rows as the scan makes them: statistics of generated residual maps and region masks."""
    rows = []
    for residual, masks, facts in generated_maps(count, seed):
        row = stats.image_stats(residual, masks, SCAN)
        row.update(facts)
        rows.append(row)
    rows.append({"path": "shots/broken.jpg", "status": "error", "error": "cannot decode: truncated"})
    return rows


@pytest.fixture
def rule_file(tmp_path) -> Path:
    path = tmp_path / "acme.toml"
    path.write_text(OTHER_THRESHOLDS)
    return path


def scan_side(rows: list[dict], specs: list[str]) -> pd.DataFrame:
    rule_sets = rules.load_rule_sets(specs)
    return pd.DataFrame([{**row, **rules.score_row(rule_sets, row, SCAN)} for row in rows])


def assert_same_scores(expected: pd.DataFrame, actual: pd.DataFrame, names: list[str]) -> None:
    assert list(expected["path"]) == list(actual["path"])
    for name in names:
        exp = expected[f"score_{name}"].to_numpy(dtype=float)
        act = actual[f"score_{name}"].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(exp), np.isnan(act))
        np.testing.assert_allclose(exp[~np.isnan(exp)], act[~np.isnan(act)], rtol=0, atol=1e-9)
        for column in (f"grade_{name}", f"reasons_{name}"):
            left = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in expected[column]]
            right = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in actual[column]]
            assert left == right, column


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_rescore_equals_scoring_during_the_scan(tmp_path, rule_file, suffix):
    rows = generated_rows()
    specs = ["portrait", "landscape-strict", "night", str(rule_file)]
    expected = scan_side(rows, specs)
    # the report as a scan without rules would have written it
    bare = pd.DataFrame(rows)
    report = tmp_path / f"report{suffix}"
    write_report(bare, report, suffix.lstrip("."), {"thresholds": SCAN.as_dict(), "rule_sets": []})
    out = tmp_path / f"rescored{suffix}"
    args = ["rescore", str(report), "--out", str(out)]
    for spec in specs:
        args += ["--rules", spec]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"rescored {len(rows)} photos" in result.output
    actual, metadata = read_report(out)
    assert_same_scores(expected, actual, ["portrait", "landscape-strict", "night", "acme"])
    assert metadata["rule_sets"] == ["portrait", "landscape-strict", "night", "acme"]
    assert metadata["thresholds"] == SCAN.as_dict()
    # the rule set with its own thresholds really saw other shares than the scan's
    acme = rules.load_rule_file(rule_file)
    frame = rules.MetricFrame.from_rows(rows[:-1], SCAN).with_thresholds(acme.effective_thresholds(SCAN))
    assert not np.allclose(frame.metric("global.over_pct"), [r["over_pct"] for r in rows[:-1]])


def test_rescored_shares_match_pixels_for_thresholds_on_bin_edges():
    rows = generated_rows(4)
    strict = stats.Thresholds(over=0.05, under=0.175, severe=0.3)
    frame = rules.MetricFrame.from_rows(rows[:-1], SCAN).with_thresholds(strict)
    for k, (residual, _, _) in enumerate(generated_maps(4)):
        # count pixels directly
        over, under = np.mean(residual <= -0.05) * 100, np.mean(residual >= 0.175) * 100
        severe = (np.mean(residual <= -0.3) + np.mean(residual >= 0.3)) * 100
        expected = {"over_pct": over, "under_pct": under, "bad_pct": over + under, "severe_bad_pct": severe}
        for metric, value in expected.items():
            assert frame.metric(f"global.{metric}")[k] == pytest.approx(value, abs=1e-9), (k, metric)


#: Scored by hand below from the pixels of generated_maps(): deductions at the rule's own thresholds, a
#: fallback for a missing face, a difference of two metrics; and a table whose rows test differences.
HAND_DEDUCTIONS = """
name = "hand"
on_missing_region = "use_global"
[thresholds]
over = 0.05
under = 0.175
[[deductions]]
when = "global.over_pct >= 20"
points = 10
[[deductions]]
when = "face.under_pct > 5"
points = "min(40, face.under_pct)"
[[deductions]]
when = "global.p95_residual - global.p05_residual > 0.524"
points = "10 * (global.p95_residual - global.p05_residual)"
"""
HAND_TABLE = """
name = "handtable"
[[rows]]
score = 30
when = "global.over_pct - global.under_pct > 10"
[[rows]]
score = 60
when = "global.under_pct - global.over_pct > 10"
[otherwise]
score = 100
"""


def hand_scores(maps) -> tuple[list[float], list[float]]:
    """The two rule sets above, scored with numpy straight from the pixel maps."""
    deductions, table = [], []
    for residual, masks, _ in maps:
        over = np.mean(residual <= -0.05) * 100
        face = masks["face"]
        face_under = np.mean((residual[face] if face is not None else residual) >= 0.175) * 100
        spread = np.quantile(residual, 0.95) - np.quantile(residual, 0.05)
        assert abs(spread - 0.524) > 0.0015  # never on the edge: the stored quantiles are exact to ±0.0005
        score = 100.0 - 10 * (over >= 20) - (face_under > 5) * min(40.0, face_under)
        score -= (spread > 0.524) * 10 * spread
        deductions.append(max(0.0, score))
        over, under = np.mean(residual <= -0.1) * 100, np.mean(residual >= 0.1) * 100
        assert abs(over - under) != 10
        table.append(30.0 if over - under > 10 else 60.0 if under - over > 10 else 100.0)
    return deductions, table


def test_rescore_matches_scores_computed_by_hand_from_the_pixels(tmp_path):
    maps = generated_maps(24, seed=5)
    rows = generated_rows(24, seed=5)
    report = tmp_path / "report.parquet"
    write_report(pd.DataFrame(rows), report, "parquet", {"thresholds": SCAN.as_dict(), "rule_sets": []})
    (tmp_path / "hand.toml").write_text(HAND_DEDUCTIONS)
    (tmp_path / "handtable.toml").write_text(HAND_TABLE)
    out = tmp_path / "rescored.parquet"
    result = CliRunner().invoke(app, ["rescore", str(report), "--out", str(out), "--rules", str(tmp_path / "hand.toml"),
                                      "--rules", str(tmp_path / "handtable.toml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got, _ = read_report(out)
    got = got[got["status"] == "ok"]
    deductions, table = hand_scores(maps)
    # every deduction and every table row decides some photos, so each one is checked
    assert len(set(np.round(deductions, 3))) > 5 and min(deductions) < 80
    assert set(table) == {30.0, 60.0, 100.0}
    np.testing.assert_allclose(got["score_hand"].to_numpy(float), deductions, rtol=0, atol=0.03)
    assert got["score_handtable"].tolist() == table


def test_rescore_equals_a_real_scan_with_the_same_rules(tmp_path, rule_file):
    import cv2

    from conftest import photo_like, write_image

    photos = tmp_path / "photos"
    for i, gain in enumerate((0.3, 1.0, 3.0, 8.0)):
        write_image(photos / f"p{i}.jpg", photo_like(120, 160, seed=i, gain=gain))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert cv2 is not None
    runner = CliRunner()
    scanned = tmp_path / "scanned"
    result = runner.invoke(app, ["scan", str(photos), "--out", str(scanned), "--model", "baseline",
                                 "--rules", "portrait", "--rules", str(rule_file)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    plain = tmp_path / "plain"
    result = runner.invoke(app, ["scan", str(photos), "--out", str(plain), "--model", "baseline"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / "rescored.parquet"
    result = runner.invoke(app, ["rescore", str(plain), "--rules", "portrait", "--rules", str(rule_file),
                                 "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    expected, _ = read_report(scanned)
    actual, _ = read_report(out)
    assert len(expected) == 5 and (expected["status"] == "error").sum() == 1
    assert_same_scores(expected, actual, ["portrait", "acme"])


def test_rescore_refuses_to_overwrite_its_input_and_checks_fail_under(tmp_path):
    report = tmp_path / "report.parquet"
    write_report(pd.DataFrame(generated_rows(3)), report, "parquet", {"thresholds": SCAN.as_dict()})
    runner = CliRunner()
    result = runner.invoke(app, ["rescore", str(report), "--rules", "default", "--out", str(report)],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "refusing to overwrite" in result.output
    result = runner.invoke(app, ["rescore", str(report), "--rules", "portait"], catch_exceptions=False)
    assert result.exit_code == 2 and "did you mean 'portrait'" in result.output
    result = runner.invoke(app, ["rescore", str(tmp_path), "--rules", "landscape-strict",
                                 "--fail-under", "landscape-strict=101"], catch_exceptions=False)
    assert result.exit_code == 2 and "NAME=SCORE" in result.output
    result = runner.invoke(app, ["rescore", str(tmp_path), "--rules", "landscape-strict",
                                 "--fail-under", "landscape-strict=100"], catch_exceptions=False)
    assert result.exit_code == 1 and "score below 100" in result.output
    assert (tmp_path / "report.rescored.parquet").exists()  # the default output sits beside the input
    result = runner.invoke(app, ["rescore", str(tmp_path), "--rules", "landscape-strict",
                                 "--fail-under", "landscape-strict=0"], catch_exceptions=False)
    assert result.exit_code == 0


def test_rescore_throughput_is_vectorised(tmp_path):
    """20 000 rows score in well under the time a row-by-row loop would take (the 100 000-row number is
    measured by benchmarks/bench_rules.py)."""
    import time

    rows = generated_rows(20)[:-1]
    frame_rows = rows * 1000
    df = pd.DataFrame(frame_rows)
    rule_sets = rules.load_rule_sets(["landscape-strict"])
    started = time.perf_counter()
    scored = rules.score_dataframe(rule_sets, df, SCAN)
    seconds = time.perf_counter() - started
    assert len(scored) == 20_000
    assert seconds < 10, f"{seconds:.1f} s for 20 000 rows"
    assert scored["score_landscape-strict"].iloc[0] == scored["score_landscape-strict"].iloc[20]
