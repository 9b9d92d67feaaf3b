"""Rules benchmarks: ``exposure rescore`` throughput, region-mask time, and the HTML page in headless Chromium.

Usage:
    python benchmarks/bench_rules.py rescore --rows 100000          # rows/s of score_dataframe + the command
    python benchmarks/bench_rules.py regions                        # ms per 512-px photo for compute_regions
    python benchmarks/bench_rules.py html --rows 10000 --screenshot /tmp/report.png
    python benchmarks/bench_rules.py bombs                          # ms to reject definition bombs

``html`` writes a synthetic 10 000-row report page (one file name is ``<script>alert(1)</script>.jpg``),
loads it in headless Chromium (Debian package ``chromium``; ``apt-get install -y chromium``), prints how
long Chromium took to load and render it, checks that the rows were drawn and that the hostile file name
shows up as text, and saves a screenshot to look at. Inputs are generated; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exposure_cli import stats  # noqa: E402
from exposure_cli.rules.metrics import shares_from_hist_matrix  # noqa: E402


def synthetic_report(rows: int, seed: int = 0):
    """A report DataFrame with plausible per-region statistics and histograms (no photos needed)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    thresholds = stats.Thresholds()
    centres = (np.arange(stats.HIST_BINS) + 0.5) / stats.HIST_BINS * 2 - 1
    columns: dict[str, object] = {
        "path": [f"photos/{i // 1000:03d}/img_{i:06d}.jpg" for i in range(rows)],
        "status": np.where(rng.random(rows) < 0.01, "error", "ok"),
        "width": np.full(rows, 4000),
        "height": np.full(rows, 3000),
        "exif_iso": rng.choice([100, 400, 1600, 6400], rows).astype(float),
    }
    columns["error"] = [("cannot decode" if s == "error" else None) for s in columns["status"]]
    for region in stats.REGIONS:
        present = np.ones(rows, bool) if region == "global" else rng.random(rows) < 0.6
        shift = rng.normal(0, 0.25, rows)[:, None]
        spread = rng.uniform(0.05, 0.3, rows)[:, None]
        weights = np.exp(-0.5 * ((centres[None, :] - shift) / spread) ** 2)
        pixels = rng.integers(1000, 50000, rows)[:, None]
        hist = np.floor(weights / weights.sum(axis=1, keepdims=True) * pixels).astype(np.int64)
        hist[~present] = 0
        shares = shares_from_hist_matrix(hist, thresholds)
        area = np.where(present, rng.uniform(1, 100, rows), 0.0) if region != "global" else np.full(rows, 100.0)
        mean = (hist * centres).sum(axis=1) / np.maximum(hist.sum(axis=1), 1)
        for metric in stats.REGION_METRICS:
            if metric in shares:
                values = shares[metric]
            elif metric == "area_pct":
                values = area
            elif metric == "mean_abs_residual":
                values = (hist * np.abs(centres)).sum(axis=1) / np.maximum(hist.sum(axis=1), 1)
            else:
                offset = {"p05_residual": -1.6, "p50_residual": 0.0, "p95_residual": 1.6}.get(metric, 0.0)
                values = mean + offset * spread[:, 0]
            columns[stats.column(region, metric)] = np.where(present, values, np.nan)
        columns[stats.hist_column(region)] = list(hist)
    metadata = {"thresholds": thresholds.as_dict(), "rule_sets": [], "roots": ["photos"]}
    return pd.DataFrame(columns), metadata


def bench_rescore(rows: int) -> None:
    from exposure_cli.report.writers import write_report
    from exposure_cli.rules import PRESETS, load_rule_sets, score_dataframe

    df, metadata = synthetic_report(rows)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.parquet"
        started = time.perf_counter()
        write_report(df, report, "parquet", metadata)
        print(f"wrote a {rows}-row synthetic report in {time.perf_counter() - started:.1f} s")
        rule_sets = load_rule_sets(list(PRESETS))
        for label, sets in (("all six presets", rule_sets), ("portrait", rule_sets[1:2])):
            started = time.perf_counter()
            score_dataframe(sets, df, stats.Thresholds())
            seconds = time.perf_counter() - started
            print(f"score_dataframe, {label}: {seconds:.2f} s = {rows / seconds:,.0f} rows/s")
        other = load_rule_sets([_thresholds_file(Path(tmp))])
        started = time.perf_counter()
        score_dataframe(other, df, stats.Thresholds())
        seconds = time.perf_counter() - started
        print(f"score_dataframe, other thresholds (shares from histograms): {seconds:.2f} s = {rows / seconds:,.0f} rows/s")
        command = [sys.executable, "-m", "exposure_cli", "rescore", str(report), "--rules", "portrait",
                   "--rules", "landscape-strict", "--out", str(Path(tmp) / "new.parquet")]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        print(f"`exposure rescore` end to end (read + score 2 rule sets + write): {time.perf_counter() - started:.1f} s")
        print(result.stdout.strip().splitlines()[0] if result.stdout else result.stderr)


def _thresholds_file(folder: Path) -> str:
    path = folder / "strict.toml"
    path.write_text(
        'name = "strict-pixels"\n[thresholds]\nover = 0.05\nunder = 0.07\n'
        '[[deductions]]\nwhen = "global.over_pct >= 20"\npoints = 30\n'
        '[[deductions]]\nwhen = "subject.under_pct >= 10"\npoints = "min(40, subject.under_pct)"\n'
    )
    return str(path)


def bench_regions(repeats: int = 20) -> None:
    import cv2

    from exposure_cli.regions import compute_regions

    rng = np.random.default_rng(0)
    images = []
    try:
        from skimage import data

        for name in ("astronaut", "coffee", "chelsea", "rocket"):
            rgb = getattr(data, name)().astype(np.float32) / 255
            scale = 512 / max(rgb.shape[:2])
            images.append((name, cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)))))
    except ImportError:
        images.append(("noise", rng.random((384, 512, 3), dtype=np.float32)))
    for name, rgb in images:
        compute_regions(rgb)
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            masks = compute_regions(rgb)
        ms = (time.perf_counter() - started) / repeats * 1000
        cpu_ms = (time.process_time() - cpu_started) / repeats * 1000
        found = ", ".join(k for k, v in masks.items() if v is not None)
        print(f"{name} {rgb.shape[1]}×{rgb.shape[0]}: {ms:.1f} ms wall, {cpu_ms:.1f} ms CPU per photo "
              f"(found: {found}); load average {os.getloadavg()[0]:.1f}")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(binary: str, profile: str, *extra: str) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *extra]


def bench_html(rows: int, screenshot: Path) -> int:
    from exposure_cli.report.html import write_html_report
    from exposure_cli.rules import PRESETS, load_rule_sets, score_dataframe

    binary = find_chromium()
    if binary is None:
        print("chromium not found: apt-get install -y chromium")
        return 1
    df, metadata = synthetic_report(rows)
    df = score_dataframe(load_rule_sets(list(PRESETS[:3])), df, stats.Thresholds())
    # the worst photo (first on the page) gets a hostile name: it must show up as text, never run
    worst = df["score_default"].idxmin()
    df.loc[worst, "path"] = "<script>alert(1)</script>.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "index.html"
        started = time.perf_counter()
        write_html_report(df, metadata, page)
        print(f"wrote {page.stat().st_size / 1e6:.1f} MB page for {rows} rows in {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory() as profile:
            started = time.perf_counter()
            dom = subprocess.run(chromium_command(binary, profile, "--dump-dom", page.as_uri()),
                                 capture_output=True, text=True, timeout=120).stdout
            print(f"chromium load + render + dump DOM: {time.perf_counter() - started:.1f} s "
                  f"(includes browser start-up)")
        drawn = dom.count('class="row')
        ready = 'data-ready="1"' in dom
        import re

        render = re.search(r'data-render-ms="(\d+)"', dom)
        print(f"rows in the DOM: {drawn} of {rows} (virtualised); ready flag: {ready}; "
              f"page ready {render.group(1) if render else '?'} ms after navigation start")
        hostile_as_text = "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in dom and "<script>alert(1)" not in dom
        print(f"hostile file name shown as text (and nowhere as markup): {hostile_as_text}")
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(chromium_command(binary, profile, f"--screenshot={screenshot}", "--window-size=1400,900",
                                            page.as_uri()), capture_output=True, timeout=120)
        print(f"screenshot: {screenshot}")
    return 0 if drawn and hostile_as_text else 1


def bench_bombs(repeats: int = 5) -> None:
    """How fast rule files with exponential definitions or 3 000-deep chains are rejected (ms)."""
    from exposure_cli.rules import RuleError, parse_rule_text

    doubling = [f'd{i} = "d{i - 1} + d{i - 1}"' for i in range(1, 60)]
    chain = [f'c{i} = "c{i - 1} + 1"' for i in range(1, 3000)]
    for label, body, last in (("doubling", doubling, "d59"), ("chain", chain, "c2999")):
        lines = ['d0 = "global.over_pct"', 'c0 = "global.over_pct"'] + body
        text = "\n".join(['name = "bomb"', "[define]", *lines, "[[rows]]", "score = 1", f'when = "{last} > 1"'])
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            try:
                parse_rule_text(text)
            except RuleError:
                pass
            times.append(time.perf_counter() - started)
        print(f"{label}: rejected in {1000 * min(times):.0f} ms (best of {repeats})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("rescore", "regions", "html", "bombs"))
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--screenshot", type=Path, default=Path(tempfile.gettempdir()) / "exposure-report.png")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.what == "rescore":
        bench_rescore(args.rows or 100_000)
    elif args.what == "regions":
        bench_regions()
    elif args.what == "bombs":
        bench_bombs()
    else:
        return bench_html(args.rows or 10_000, args.screenshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
