"""Does the reduced-decode floor read differently right after a scan? Alternates floor, floor, scan, floor,
floor (each floor the marginal ms per photo of 104 − 8 photos, as ``bench_scan.py --targets`` measures it),
optionally with ``sync`` and a rest before every floor.

    python benchmarks/floor_after_scan.py --rounds 2 --settle

"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_scan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/exposure-bench"), help="bench_scan.py's folders")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--settle", action="store_true", help="os.sync() and 2 s of rest before every floor")
    args = ap.parse_args()

    def floor_ms() -> float:
        if args.settle:
            os.sync()
            time.sleep(2)
        def run(n: int) -> dict:
            return bench_scan.run_child(bench_scan.DECODE_SNIPPET, {"folder": str(args.data / f"12mp_first{n}"),
                                                                    "workers": 2, "target": 512})
        return bench_scan.marginal_cost(run, 8, 104)["ms"]

    def scan() -> None:
        bench_scan.run_child(bench_scan.SCAN_SNIPPET, {"paths": [str(args.data / "12mp_first104")],
                                                       "out": str(args.data / "out" / "floor_after_scan"),
                                                       "threads": 2, "regions": "all", "model": "baseline",
                                                       "working_long_side": 320})

    for rnd in range(args.rounds):
        before = [floor_ms(), floor_ms()]
        scan()
        after = [floor_ms(), floor_ms()]
        print(f"round {rnd + 1}: floor {before[0]:.1f}, {before[1]:.1f} ms/photo; after a scan {after[0]:.1f}, "
              f"{after[1]:.1f} (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
