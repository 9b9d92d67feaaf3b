"""Where a real scan's CPU goes, stage by stage, on the scan's own threads.

``benchmarks/profile_scan.py`` calls each stage alone on one thread; this one runs ``pipeline.scan`` as a
user would (decode pool, model thread, finishing pool) and adds up the per-thread CPU time
(``time.thread_time()``) spent inside each stage's function, so it shows what the stages cost when four
threads share two cores and their memory bandwidth. Per photo, after a warm-up scan; the last repetition
is the one to quote (the first pays one-off costs).

    python benchmarks/profile_scan_threads.py --folder /tmp/exposure-bench/12mp_first104 --model baseline

"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True, help="photos to scan (e.g. bench_scan.py's 12mp_first104)")
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--working-size", type=int, default=None, help="working long side (default: the card's)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from exposure_cli import correction, outdir, pipeline, processing, regions, stats
    from exposure_cli.analyzers import baseline, create_analyzer
    from exposure_cli.regions import compute_regions

    spent: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def count(owner, name: str, label: str) -> None:
        function = getattr(owner, name)

        def counted(*a, **k):
            start = time.thread_time()
            try:
                return function(*a, **k)
            finally:
                with lock:
                    spent[label] += time.thread_time() - start

        setattr(owner, name, counted)

    count(processing, "decode_item", "decode (decode_item)")
    count(processing.BatchProcessor, "_finish", "finishing, all of it")
    count(processing.BatchProcessor, "_region_code", "  regions")
    count(regions, "region_inputs", "    working copy (area resize, grey)")
    count(regions, "detect_faces", "    faces")
    count(regions, "_sky_mask", "    sky")
    count(regions, "spectral_residual_saliency", "    spectral residual saliency")
    count(regions, "colour_contrast_saliency", "    colour contrast saliency")
    count(regions, "_subject_mask", "    subject mask")
    count(processing, "image_stats", "  statistics (image_stats)")
    count(stats, "_joint_histogram", "    histogram")
    count(correction, "SampleLevels", "    ev_correction's samples")
    count(stats, "_stats_from_fine", "    shares, means, percentiles")
    count(processing.BatchProcessor, "_score", "  rules")
    count(processing, "grey", "  grey")
    count(baseline, "baseline_residual", "  baseline map")
    count(outdir.Journal, "append", "journal")

    if args.working_size is None and args.model != "baseline":
        analyzer = create_analyzer(args.model, batch_size=8)
    else:
        from benchmarks.bench_scan import card_working_size

        analyzer = create_analyzer(args.model, working_long_side=args.working_size or card_working_size(), batch_size=8)
    analyzer.analyze(np.full((64, 64, 3), 0.5, np.float32))
    compute_regions(np.full((64, 64, 3), 0.5, np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            out = Path(tmp) / "out"
            shutil.rmtree(out, ignore_errors=True)
            spent.clear()
            cpu, wall = time.process_time(), time.perf_counter()
            result = pipeline.scan([args.folder], analyzer=analyzer, out=out, regions="all")
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = max(result.processed, 1)
            measured = spent["decode (decode_item)"] + spent["finishing, all of it"] + spent["journal"]
            print(f"\nrepetition {rep + 1}: {n} photos, wall {1000 * wall / n:.1f} ms, CPU {1000 * cpu / n:.2f} ms "
                  f"per photo (load {__import__('os').getloadavg()[0]:.1f})")
            print("| stage | CPU ms per photo |\n|---|---|")
            for label, seconds in spent.items():
                print(f"| {label} | {1000 * seconds / n:.2f} |")
            print(f"| everything else (model thread, pools, writers) | {1000 * (cpu - measured) / n:.2f} |")


if __name__ == "__main__":
    main()
