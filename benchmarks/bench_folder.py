"""Folder-size benchmark: folders of small JPEGs scanned with the default analyzer and the baseline, side by side.

Usage:
    python benchmarks/bench_folder.py                              # 64 and 256 px, 1 000 and 10 000 files
    python benchmarks/bench_folder.py --sizes 64 --files 1000 10000 100000
    python benchmarks/bench_folder.py --sizes 256 --files 1000 --repeat 2

For every photo size (long side: 64 → 64×48, 256 → 256×192 JPEGs, quality 85, 64 distinct photo-like
images cycled) and folder size, each analyzer scans the folder in its own process (``bench_scan.py``'s
runner: default scan options — regions, statistics, a Parquet report — peak RSS from VmHWM, time measured
inside the process after the model is loaded and warmed up, and the process's CPU time over the same span,
all threads). Cases run interleaved (baseline, default, baseline, …) so the load of a shared machine hits
both alike; with --repeat the best run of each is kept. Prints ms per file (wall and CPU), the default ÷
baseline ratios and peak RSS, with the load average before → after each run, and writes JSON. On a loaded
machine the CPU-time ratio is the steadier of the two: wall time depends on the share of the cores a
process gets, CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_folder(folder: Path, n: int, long_side: int, distinct: int = 64) -> Path:
    """n JPEGs of long side `long_side` (4:3), `distinct` different images cycled, 1 000 per sub-folder."""
    import cv2

    from bench_scan import _texture

    done = folder / f".done_{n}"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    h, w = long_side * 3 // 4, long_side
    blobs = []
    for i in range(distinct):
        ok, buf = cv2.imencode(".jpg", _texture(h, w, i)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        blobs.append(buf.tobytes())
    for i in range(n):
        sub = folder / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(exist_ok=True)
        p = sub / f"s{i:06d}.jpg"
        if not p.exists():
            p.write_bytes(blobs[i % distinct])
    done.touch()
    return folder


def main() -> None:
    from bench_scan import SCAN_SNIPPET, run_child

    # bench_scan's runner reports the process's CPU time over the scan (all threads) itself
    snippet = SCAN_SNIPPET
    assert '"cpu_seconds": cpu' in snippet and "time.process_time()" in snippet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/exposure-bench-folder"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--models", default="baseline,default", help="analyzers (default = the default analyzer)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results_folder.json")
    args = ap.parse_args()
    from exposure_cli.analyzers import DEFAULT_ANALYZER

    models = [DEFAULT_ANALYZER if m == "default" else m for m in args.models.split(",")]
    cores = os.cpu_count() or 2
    out: dict = {"machine": {"cpu_count": cores, "platform": platform.platform(), "python": platform.python_version()},
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cases": []}
    print(f"{out['date']}, {cores} cores, load average {os.getloadavg()}", flush=True)
    for size in args.sizes:
        for n in args.files:
            folder = make_folder(args.data / f"jpeg{size}_{n}", n, size)
            runs: dict[str, list[dict]] = {m: [] for m in models}
            for rep in range(args.repeat):
                for model in models:
                    load = os.getloadavg()[0]
                    r = run_child(snippet, {"paths": [str(folder)], "out": str(args.data / "out" / f"{model}_{size}_{n}"),
                                                 "threads": cores, "model": model})
                    r.update(loadavg_1min_before=load, loadavg_1min_after=os.getloadavg()[0],
                             ms_per_file=1000 * r["seconds"] / max(1, r["processed"]),
                             cpu_ms_per_file=1000 * r["cpu_seconds"] / max(1, r["processed"]))
                    runs[model].append(r)
                    print(f"  {size:4d} px, {n:6d} files, {model:8s} #{rep + 1}: {r['ms_per_file']:7.2f} ms/file "
                          f"(CPU {r['cpu_ms_per_file']:6.2f}), "
                          f"peak RSS {r['peak_rss_mb']:5.0f} MB, processed {r['processed']}, errors {r['errors']} "
                          f"(load {load:.1f} → {r['loadavg_1min_after']:.1f})", flush=True)
            best = {m: min(rs, key=lambda r: r["seconds"]) for m, rs in runs.items()}
            case = {"size": size, "files": n, "runs": runs,
                    "best_ms_per_file": {m: b["ms_per_file"] for m, b in best.items()},
                    "cpu_ms_per_file": {m: b["cpu_ms_per_file"] for m, b in best.items()},
                    "peak_rss_mb": {m: b["peak_rss_mb"] for m, b in best.items()}}
            if len(models) == 2:
                case["ratio"] = best[models[1]]["ms_per_file"] / best[models[0]]["ms_per_file"]
                case["cpu_ratio"] = best[models[1]]["cpu_ms_per_file"] / best[models[0]]["cpu_ms_per_file"]
            out["cases"].append(case)
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    out["loadavg_end"] = os.getloadavg()
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    head = " | ".join(f"{m} ms/file (CPU) | {m} peak RSS MB" for m in models)
    print(f"\n| size | files | {head} | {models[-1]} ÷ {models[0]} (CPU) | load (1 min) |")
    print("|---" * (3 + 2 * len(models) + (len(models) == 2)) + "|")
    for c in out["cases"]:
        cells = " | ".join(f"{c['best_ms_per_file'][m]:.2f} ({c['cpu_ms_per_file'][m]:.2f}) | {c['peak_rss_mb'][m]:.0f}"
                           for m in models)
        loads = [r[k] for rs in c["runs"].values() for r in rs for k in ("loadavg_1min_before", "loadavg_1min_after")]
        ratio = f"{c['ratio']:.2f} ({c['cpu_ratio']:.2f})" if "ratio" in c else "–"
        print(f"| {c['size']}×{c['size'] * 3 // 4} | {c['files']:,} | {cells} | {ratio} | "
              f"{min(loads):.1f}–{max(loads):.1f} |")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
