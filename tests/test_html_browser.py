"""The report page as a browser shows it: every thumbnail decoded, every header readable, rescored rule
sets on the page.

The page is opened by a real headless Chromium (Debian ``chromium``; ``.ci/run`` installs it, the browser
tests skip with that reason where it is absent) inside a small harness page that waits for the page's
load event and then reads its DOM: ``naturalWidth`` of every thumbnail, and each header cell's text width
against its box.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import photo_like, write_image
from exposure_cli.cli import app

FAST = ["--model", "baseline", "--no-regions", "-q"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


needs_chromium = pytest.mark.skipif(_chromium() is None,
                                    reason="headless Chromium not installed (apt-get install -y chromium)")

HARNESS = """<!doctype html><meta charset="utf-8"><body>
<iframe id="page" src="%s" style="width:1400px;height:900px;border:0"></iframe>
<pre id="result">pending</pre>
<script>
window.addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const imgs = Array.from(doc.querySelectorAll("#spacer img"));
  const heads = Array.from(doc.querySelectorAll("#head div"));
  document.getElementById("result").textContent = JSON.stringify({
    ready: doc.body.dataset.ready || null,
    rows: doc.querySelectorAll("#spacer .row").length,
    missing: doc.querySelectorAll("#spacer .nothumb").length,
    thumbs: imgs.map(i => ({src: i.getAttribute("src"), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight})),
    heads: heads.map(h => ({text: h.textContent, scroll: h.scrollWidth, client: h.clientWidth})),
    texts: Array.from(doc.querySelectorAll("#spacer .row")).map(r => r.textContent),
  });
});
</script>"""


def inspect_page(page: Path, tmp: Path) -> dict:
    """Load `page` in headless Chromium and return what the harness read from its DOM after load."""
    harness = tmp / "harness.html"
    harness.write_text(HARNESS % page.as_uri(), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--allow-file-access-from-files",
             f"--user-data-dir={profile}", "--window-size=1500,1000", "--virtual-time-budget=10000",
             "--dump-dom", harness.as_uri()],
            capture_output=True, text=True, timeout=180,
        ).stdout
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found and found.group(1) != "pending", dom[-2000:]
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    photos = root / "photos"
    for i in range(12):
        write_image(photos / f"sub {i % 3}" / f"photo {i}.jpg", photo_like(120, 160, seed=i, gain=[0.1, 1, 5][i % 3]))
    out = root / "audit"
    res = CliRunner().invoke(app, ["scan", str(photos), "--out", str(out), "--overlays", "--rules", "default",
                                   "--rules", "landscape-strict", *FAST], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


@needs_chromium
def test_every_thumbnail_decodes_and_every_header_fits(scanned, tmp_path):
    res = CliRunner().invoke(app, ["report", str(scanned)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    page = scanned / "report.html"
    for attempt in range(3):  # "every time": the screenshots that lost thumbnails lost 2 of 5
        seen = inspect_page(page, tmp_path)
        assert seen["ready"] == "1" and seen["rows"] == 12
        assert len(seen["thumbs"]) == 12 and seen["missing"] == 0
        broken = [t for t in seen["thumbs"] if not (t["complete"] and t["w"] > 0 and t["h"] > 0)]
        assert not broken, (attempt, broken)
        cut = [h for h in seen["heads"] if h["scroll"] > h["client"]]
        assert not cut, cut  # no header is clipped ("stat…", "face ba…")
        assert {h["text"].strip() for h in seen["heads"]} >= {"status", "face bad %", "landscape-strict", "fix (EV)"}
    # every photo's stops of correction, written as the console summary writes them
    from exposure_cli.commands.ui import format_stops
    from exposure_cli.report.writers import read_report

    df, _ = read_report(scanned)
    texts = seen["texts"]
    for _, row in df.iterrows():
        name = row["path"].split("/")[-1]
        line = next(t for t in texts if name in t)
        assert format_stops(row["ev_correction"]) in line, (name, row["ev_correction"], line)


@needs_chromium
def test_a_missing_thumbnail_says_so(scanned, tmp_path):
    copy = tmp_path / "audit"
    shutil.copytree(scanned, copy)
    victim = next((copy / "overlays").rglob("*.overlay.jpg"))
    victim.unlink()
    assert CliRunner().invoke(app, ["report", str(copy)], catch_exceptions=False).exit_code == 0
    seen = inspect_page(copy / "report.html", tmp_path)
    assert seen["missing"] == 1 and len(seen["thumbs"]) == 11


def test_report_shows_the_rule_sets_rescore_added(scanned, tmp_path):
    """`exposure rescore DIR --rules night`, then `exposure report DIR`: the page has the night scores."""
    from test_html import embedded_data

    copy = tmp_path / "audit"
    shutil.copytree(scanned, copy)
    assert CliRunner().invoke(app, ["rescore", str(copy), "--rules", "night"], catch_exceptions=False).exit_code == 0
    res = CliRunner().invoke(app, ["report", str(copy)], catch_exceptions=False)
    assert res.exit_code == 0 and "report.rescored.parquet" in res.output
    data = embedded_data((copy / "report.html").read_text(encoding="utf-8"))
    assert data["rules"] == ["default", "landscape-strict", "night"]
    # a second rescore adds to the first instead of starting again from the scan's report
    assert CliRunner().invoke(app, ["rescore", str(copy), "--rules", "portrait"], catch_exceptions=False).exit_code == 0
    assert CliRunner().invoke(app, ["report", str(copy)], catch_exceptions=False).exit_code == 0
    data = embedded_data((copy / "report.html").read_text(encoding="utf-8"))
    assert data["rules"] == ["default", "landscape-strict", "night", "portrait"]
    assert (copy / "report.parquet").exists()  # the scan's own report is never overwritten
    night = data["columns"].index("score_night")
    assert all(isinstance(row[night], (int, float)) for row in data["rows"])
