"""Per-file cost breakdown of a scan of small JPEGs (issue 18's "fixed costs"), stage by stage, on one thread.

Usage:
    python benchmarks/profile_small.py --data /tmp/small_bench/data --size 256 -n 1000 --model baseline
    python benchmarks/profile_small.py --size 256 -n 1000               # the default analyzer
    python benchmarks/profile_small.py --size 256 -n 1000 --json out.json
    python benchmarks/profile_small.py --src /path/to/other/checkout ...   # that checkout's library (before/after)

Every stage is the library's own function, called in the order a scan calls it, on the folder of small
JPEGs that ``benchmarks/bench_folder.py`` generates (cached under --data). Everything runs on this one
thread (torch, OpenCV and OpenMP at one thread), so the process's CPU time is the stage's own; the table
gives the CPU milliseconds per file, summed over the folder and divided by the files. The last rows run the
real ``exposure scan`` (its threads, a Parquet report into a temporary folder) on the same files and give
its CPU time per file: what the stages do not account for is the scan's own orchestration (threads,
queues, futures, the walk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class Stages:
    """CPU (and wall) milliseconds per stage, summed."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    def time(self, name: str):
        stages = self

        class _T:
            def __enter__(self):
                self.t, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                stages.wall[name] = stages.wall.get(name, 0.0) + 1000 * (time.perf_counter() - self.t)
                stages.cpu[name] = stages.cpu.get(name, 0.0) + 1000 * (time.process_time() - self.c)

        return _T()


def profile(folder: Path, model: str | None, n: int) -> tuple[dict[str, float], dict[str, float], int]:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    import numpy as np

    from exposure_cli import regions as R
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.color import grey
    from exposure_cli.discovery import discover
    from exposure_cli.outdir import OutputFolder
    from exposure_cli.pipeline import ScanOptions, scan_metadata
    from exposure_cli.processing import BatchProcessor, Decoded, decode_item, fingerprint
    from exposure_cli.report.schema import ReportFormat, base_columns, rule_columns
    from exposure_cli.report.writers import row_to_json
    from exposure_cli.rules import load_rule_sets
    from exposure_cli.stats import Thresholds, image_stats

    s = Stages()
    analyzer = create_analyzer(model, working_long_side=512, batch_size=8, device="cpu")
    analyzer.analyze(np.full((64, 64, 3), 0.5, np.float32))
    options = ScanOptions()
    rule_sets = load_rule_sets(list(options.rules))
    names = [rs.name for rs in rule_sets]
    proc = BatchProcessor(analyzer, Thresholds(), rule_sets, None, regions=True)
    tmp = Path(tempfile.mkdtemp(prefix="exposure-profile-small-"))
    try:
        with s.time("discovery: walk + fingerprint (stat)"):
            items = list(discover([str(folder)]))[:n]
            for it in items:
                fingerprint(it)
        working = analyzer.working_long_side
        decoded = []
        for it in items:
            with s.time("decode (decode_file: read, EXIF, float RGB)"):
                d = decode_item(it, options, working)
            with s.time("analyzer: prepare (decode thread)"):
                proc.prepare(d)
            decoded.append(d)
        from exposure_cli.processing import Batcher

        batcher = Batcher(options.batch_size, working, analyzer=analyzer)
        batches = []
        for d in decoded:
            b = batcher.add(d)
            if b:
                batches.append(b)
        batches.extend(batcher.drain())
        rows = []
        for batch in batches:
            with s.time("analyzer: batched part (model thread)"):
                finishes = analyzer.analyze_split([d.image.rgb for d in batch], [d.prepared for d in batch])
            for d, finish in zip(batch, finishes):
                img = d.image
                with s.time("grey of the photo"):
                    g = grey(img.rgb)
                with s.time("analyzer: per-photo finish (map)"):
                    residual = finish(image_grey=g)
                with s.time("regions: detectors' small copy"):
                    small, gs = R.region_inputs(img.rgb)
                with s.time("regions: face (LBP cascade)"):
                    R.detect_faces(gs)
                with s.time("regions: all, as the scan calls them (region_code)"):
                    code = R.region_code(img.rgb, proc.region_names)
                with s.time("statistics (image_stats)"):
                    st = image_stats(residual, None, proc.thresholds, grey=g, ev_calibration=analyzer.ev_calibration,
                                     region_code=code, computed=proc.region_names)
                with s.time("row: file facts, EXIF, analyzer columns"):
                    row = proc._safe_row(d, residual, None, g)[0]  # the whole row again, for the real dict
                rows.append(row)
            # _safe_row recomputes regions + statistics + rules: subtract below
        # the row's own assembly = _safe_row − regions − statistics − rules (measured separately)
        for row in rows[:]:
            with s.time("rules: default rule set (score_row)"):
                proc._score(dict(row))
        with OutputFolder(tmp / "out") as folder:
            folder.lock()
            meta = scan_metadata(analyzer, options, names, [str(folder)])
            folder.prepare(meta, resume=False, overwrite=False)
            journal = folder.journal()
            journal.open()
            for start in range(0, len(rows), options.batch_size):
                chunk = rows[start:start + options.batch_size]
                with s.time("journal: JSON encode of the rows"):
                    "".join(row_to_json(r) + "\n" for r in chunk).encode("utf-8")
                with s.time("journal: append (encode + write + fsync)"):
                    journal.append(chunk)
            journal.close()
            with s.time("report: import pyarrow (once per scan, ÷ files)"):
                import pyarrow.parquet  # noqa: F401
            with s.time("report: finalize (journal → report.parquet)"):
                folder.finalize(ReportFormat.parquet, base_columns() + rule_columns(names), meta,
                                [it.key for it in items])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row_cpu = s.cpu.pop("row: file facts, EXIF, analyzer columns")
    s.wall.pop("row: file facts, EXIF, analyzer columns")
    s.cpu["row: file facts, EXIF, analyzer columns + rules (rest of _row)"] = max(
        0.0, row_cpu - s.cpu["regions: all, as the scan calls them (region_code)"] - s.cpu["statistics (image_stats)"])
    return s.cpu, s.wall, len(items)


def whole_scan(folder: Path, model: str | None) -> tuple[float, float, int]:
    import numpy as np
    import torch

    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.pipeline import scan

    analyzer = create_analyzer(model, working_long_side=512, batch_size=8)
    analyzer.analyze(np.full((64, 64, 3), 0.5, np.float32))
    out = Path(tempfile.mkdtemp(prefix="exposure-profile-scan-")) / "out"
    torch.set_num_threads(1)
    t, c = time.perf_counter(), time.process_time()
    res = scan([str(folder)], analyzer=analyzer, out=out)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    shutil.rmtree(out.parent, ignore_errors=True)
    return 1000 * cpu / res.processed, 1000 * wall / res.processed, res.processed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/small_bench/data"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--src", type=Path, default=None, help="profile the library of this checkout instead")
    args = ap.parse_args()
    from bench_folder import make_folder  # (it puts this checkout first on sys.path)

    if args.src is not None:  # another checkout's library, imported before this one's
        sys.path.insert(0, str(args.src.resolve()))
    import exposure_cli

    assert args.src is None or Path(exposure_cli.__file__).resolve().is_relative_to(args.src.resolve())

    folder = make_folder(args.data / f"jpeg{args.size}_{args.n}", args.n, args.size)
    load = os.getloadavg()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu, wall, n = profile(folder, args.model, args.n)
    scan_cpu, scan_wall, _ = whole_scan(folder, args.model)
    print(f"\n{args.size} px JPEGs, {n} files, analyzer {args.model or 'default'}, CPU ms per file on one thread "
          f"({exposure_cli.__file__}; load average {load[0]:.1f} → {os.getloadavg()[0]:.1f}, {when})\n")
    print("| stage | CPU ms/file | wall ms/file |\n|---|---|---|")
    for k, v in cpu.items():
        print(f"| {k} | {v / n:.2f} | {wall.get(k, float('nan')) / n:.2f} |")
    print(f"| whole scan (`scan()`, its threads), CPU / wall | {scan_cpu:.2f} | {scan_wall:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "date": when, "files": n, "model": args.model,
                                         "cpu_ms_per_file": {k: v / n for k, v in cpu.items()},
                                         "scan_cpu_ms_per_file": scan_cpu, "scan_wall_ms_per_file": scan_wall},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
