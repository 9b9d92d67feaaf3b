"""Per-photo statistics: one joint fine histogram (what the scan does) vs masking + sorting per region.

Usage: python benchmarks/bench_stats.py [--size 1000x750] [--reps 5]

Both compute the same per-region shares and percentiles for a residual map with five region masks; the
reference does it the direct way (boolean-mask each region, compare, np.percentile), side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exposure_cli.stats import Thresholds, image_stats  # noqa: E402


def direct(r: np.ndarray, masks: dict, t: Thresholds) -> dict:
    out = {}
    for name, m in [("global", None), *masks.items()]:
        v = r.ravel() if m is None else r[m]
        out[name] = (
            (v <= -t.over).mean() * 100, (v >= t.under).mean() * 100, (v <= -t.severe).mean() * 100,
            (v >= t.severe).mean() * 100, v.mean(), np.abs(v).mean(), *np.percentile(v, [5, 50, 95]),
            np.histogram(v, bins=80, range=(-1, 1))[0],
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1000x750")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    rng = np.random.default_rng(0)
    r = np.tanh(rng.normal(0, 0.3, (h, w))).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    masks = {
        "face": (xx - w / 2) ** 2 + (yy - h / 3) ** 2 < (h / 8) ** 2,
        "person": (abs(xx - w / 2) < w / 6) & (yy > h / 5),
        "subject": (abs(xx - w / 2) < w / 4) & (yy > h / 6),
        "sky": yy < h / 6,
    }
    masks["background"] = ~masks["subject"]
    t = Thresholds()
    for name, fn in (("joint fine histogram (scan)", lambda: image_stats(r, masks, t)),
                     ("mask + compare + percentile per region", lambda: direct(r, masks, t))):
        fn()
        best = min(_time(fn) for _ in range(args.reps))
        print(f"{name:42s} {best * 1000:7.1f} ms per photo ({w}×{h}, 5 regions + global)")


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
