"""The HTML report page: safe embedding of user data, thumbnails, the command, and a headless Chromium render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from exposure_cli import stats
from exposure_cli.cli import app
from exposure_cli.report.html import safe_json, write_html_report
from exposure_cli.report.writers import write_report

HOSTILE = "<script>alert(1)</script>.jpg"
NASTY = ["</script><img src=x onerror=alert(2)>.jpg", "a&amp;b\u2028c\u2029.jpg", "quote\"'`${x}.jpg", "ünï cødé 写真.jpg"]


def report_rows(count: int, names: list[str] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        residual = np.zeros((40, 40), np.float32)
        residual[: int(rng.integers(0, 40))] = -0.5
        row = stats.image_stats(residual, {}, stats.Thresholds())
        row.update(path=(names[i] if names and i < len(names) else f"img_{i:05d}.jpg"), status="ok", error=None,
                   width=40, height=40, score_default=float(100 - row["bad_pct"]), grade_default="B",
                   reasons_default=f"reason for {i} <b>bold?</b>")
        rows.append(row)
    return pd.DataFrame(rows)


def embedded_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match, "data block missing"
    return json.loads(match.group(1))


def test_safe_json_cannot_close_the_script_block():
    text = safe_json({"path": HOSTILE, "more": NASTY})
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == {"path": HOSTILE, "more": NASTY}


def test_page_embeds_user_strings_as_data_only(tmp_path):
    df = report_rows(6, [HOSTILE, *NASTY])
    page = write_html_report(df, {"thresholds": stats.Thresholds().as_dict()}, tmp_path / "index.html").read_text()
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page and "</script><img" not in page
    assert page.count("<script") == 2  # the JSON block and the page's own script, nothing else
    data = embedded_data(page)
    paths = [row[data["columns"].index("path")] for row in data["rows"]]
    assert paths == [HOSTILE, *NASTY, "img_00005.jpg"]
    assert data["rules"] == ["default"]
    # the page's script never feeds data to innerHTML or document.write
    script = page.split('id="report-data">', 1)[1]
    assert "innerHTML" not in script and "document.write" not in script and "eval(" not in script


def test_report_command_links_overlays_and_embeds_thumbnails(tmp_path):
    import cv2

    scan = tmp_path / "audit"
    (scan / "overlays").mkdir(parents=True)
    df = report_rows(3)
    overlay_paths = []
    for i in range(3):
        image = np.full((30, 40, 3), 60 * i, np.uint8)
        target = scan / "overlays" / f"img {i}.jpg"
        cv2.imwrite(str(target), image)
        overlay_paths.append(f"overlays/img {i}.jpg")
    df["overlay_path"] = overlay_paths
    write_report(df, scan / "report.parquet", "parquet", {"thresholds": stats.Thresholds().as_dict()})
    out = tmp_path / "pages" / "index.html"
    result = CliRunner().invoke(app, ["report", str(scan), "--html", str(out), "--rules", "night"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = embedded_data(out.read_text())
    thumb = data["columns"].index("thumb")
    assert data["rows"][0][thumb] == "../audit/overlays/img%200.jpg"
    assert (out.parent / "../audit/overlays/img 0.jpg").exists()
    assert "night" in data["rules"] and "default" in data["rules"]
    embedded = tmp_path / "alone.html"
    result = CliRunner().invoke(app, ["report", str(scan / "report.parquet"), "--html", str(embedded),
                                      "--embed-thumbnails"], catch_exceptions=False)
    assert result.exit_code == 0
    data = embedded_data(embedded.read_text())
    assert all(row[thumb].startswith("data:image/jpeg;base64,") for row in data["rows"])
    bad = CliRunner().invoke(app, ["report", str(scan), "--html", str(tmp_path / "x.txt")], catch_exceptions=False)
    assert bad.exit_code == 2


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_page_renders_in_headless_chromium(tmp_path):
    df = report_rows(2000)
    df.loc[df["score_default"].idxmin(), "path"] = HOSTILE  # worst first: the hostile name is on screen
    page = write_html_report(df, {}, tmp_path / "index.html")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--window-size=1400,900", "--dump-dom", page.as_uri() + "#photo=" + quote(HOSTILE)],
            capture_output=True, text=True, timeout=120,
        ).stdout
    assert 'data-ready="1"' in dom, "the page's script did not finish"
    drawn = dom.count('class="row')
    assert 5 <= drawn < 100  # virtualised: only the rows in view are in the DOM
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in dom
    assert "<script>alert(1)" not in dom
    assert "2000 photos" in dom
    assert "<h2>&lt;script&gt;alert(1)&lt;/script&gt;.jpg</h2>" in dom  # the #photo= deep link opened its details
    assert 'class="row selected"' in dom
