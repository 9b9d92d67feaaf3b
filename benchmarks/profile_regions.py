"""What the regions stage costs per photo, step by step, with and without the fused kernels, side by side.

The scan computes regions on each photo's analysis image (``regions.region_code``). This decodes the photos
of a folder as the scan does (``decoding.decode_file`` at the analysis size), then times each step of
``regions.small_regions`` on one thread (``time.thread_time``), alternating rounds with the numba kernels
(numba loaded, as in a scan with regions: the face detector needs it) and with the numpy paths only.

    python benchmarks/profile_regions.py --folder /tmp/exposure-bench/12mp_first104 --photos 40 --rounds 3

"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True, help="photos (e.g. bench_scan.py's 12mp_first104)")
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each variant, alternating")
    ap.add_argument("--analysis-side", type=int, default=512, help="long side of the analysis image")
    args = ap.parse_args()

    import numba  # noqa: F401  - loaded in every scan with regions (the face detector)

    from exposure_cli import regions
    from exposure_cli.decoding import decode_file

    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.photos]
    images = [decode_file(p, target_long_side=args.analysis_side, analysis_long_side=args.analysis_side).rgb
              for p in files]
    print(f"{len(images)} photos from {args.folder}, analysis images {images[0].shape[1]}×{images[0].shape[0]}")

    steps = [
        ("working copy (area resize, grey)", lambda im, s, g: regions.region_inputs(im)),
        ("faces", lambda im, s, g: regions.detect_faces(g)),
        ("sky", lambda im, s, g: regions._sky_mask(s, g)),
        ("spectral residual saliency", lambda im, s, g: regions.spectral_residual_saliency(g)),
        ("colour contrast saliency", lambda im, s, g: regions.colour_contrast_saliency(s)),
        ("centre prior", lambda im, s, g: regions._centre_prior(g.shape)),
        ("region_code, all of it", lambda im, s, g: regions.region_code(im)),
    ]
    real_lookup = regions.fused_kernel
    variants = {"kernels": real_lookup, "numpy": lambda name: None}
    spent = {v: collections.defaultdict(list) for v in variants}
    for image in images[:4]:  # warm-up: compile or load the kernels, fill caches
        regions.region_code(image)
    for rnd in range(args.rounds):
        for variant, lookup in variants.items():
            regions.fused_kernel = lookup
            totals = collections.Counter()
            for image in images:
                small, g = regions.region_inputs(image)
                for name, step in steps:
                    start = time.thread_time()
                    step(image, small, g)
                    totals[name] += time.thread_time() - start
            for name, _ in steps:
                spent[variant][name].append(1000 * totals[name] / len(images))
    regions.fused_kernel = real_lookup

    print(f"\nms per photo, one thread, median of {args.rounds} alternating rounds (range)\n")
    print("| step | with the kernels | numpy only | numpy ÷ kernels |\n|---|---|---|---|")
    for name, _ in steps:
        fast, slow = (statistics.median(spent[v][name]) for v in variants)
        rng = {v: f"{min(spent[v][name]):.3f}–{max(spent[v][name]):.3f}" for v in variants}
        print(f"| {name} | {fast:.3f} ({rng['kernels']}) | {slow:.3f} ({rng['numpy']}) | "
              f"{slow / fast if fast else float('nan'):.2f} |")
    print(f"\nload {__import__('os').getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
