"""What freezing the long-lived objects for a scan's duration buys (exposure_cli.pipeline.long_lived_objects_frozen).

Usage:
    python benchmarks/bench_gc_freeze.py                          # 12 MP JPEGs from bench_scan.py's cache
    python benchmarks/bench_gc_freeze.py --folders DIR [DIR ...] --rounds 3 --json out.json

Each case is one fresh process that loads the analyzer, warms it up, then times one ``scan()`` of a folder,
with the freeze (the product) or without it (the context manager replaced by a no-op); the two alternate,
round after round, so both see the same load. Printed: wall and CPU ms per photo, and the number and total
time of the cyclic collector's full (generation-2) collections during the scan.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import contextlib, gc, json, shutil, sys, time
from pathlib import Path
import numpy as np, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(1)
import exposure_cli.pipeline as P
from exposure_cli.analyzers import create_analyzer
from exposure_cli.regions import compute_regions
if not args["freeze"]:
    P.long_lived_objects_frozen = contextlib.nullcontext
out = Path(args["out"]); shutil.rmtree(out, ignore_errors=True)
an = create_analyzer(args["model"], working_long_side=args["working_long_side"], batch_size=8)
an.analyze(np.full((64, 64, 3), 0.5, np.float32)); compute_regions(np.full((64, 64, 3), 0.5, np.float32))
full = {"n": 0, "s": 0.0}; t = {}
def cb(phase, info):
    if info["generation"] != 2: return
    if phase == "start": t["t"] = time.perf_counter()
    else: full["n"] += 1; full["s"] += time.perf_counter() - t["t"]
gc.callbacks.append(cb)
tracked = len(gc.get_objects())
t0, c0 = time.perf_counter(), time.process_time()
r = P.scan([args["folder"]], analyzer=an, out=out)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"processed": r.processed, "seconds": dt, "cpu_seconds": cpu, "full_collections": full["n"],
                  "full_collection_seconds": full["s"], "tracked_objects": tracked}))
"""


def run(folder: Path, freeze: bool, model: str, size: int | None) -> dict:
    args = {"folder": str(folder), "freeze": freeze, "model": model, "working_long_side": size,
            "out": f"/tmp/exposure-gc-bench-{os.getpid()}"}
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path("/tmp/exposure-bench")
    ap.add_argument("--folders", type=Path, nargs="+",
                    default=[default / "12mp_first8", default / "12mp_first40"])
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--working-size", type=int, default=None,
                    help="the analyzer's working long side (default: the weights card's, as the default scan)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    size = args.working_size
    if size is None:
        from exposure_cli.weights import read_card, resolve_weights

        size = int(read_card(resolve_weights(None)).get("working_long_side") or 512)
    results: dict[str, dict[str, list[dict]]] = {}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, "
          f"model {args.model} at {size} px", flush=True)
    for rnd in range(args.rounds):
        for folder in args.folders:
            for freeze in (False, True):
                r = run(folder, freeze, args.model, size)
                r["load"] = os.getloadavg()[0]
                results.setdefault(folder.name, {}).setdefault("frozen" if freeze else "plain", []).append(r)
                print(f"round {rnd + 1} {folder.name:14s} {'frozen' if freeze else 'plain ':6s} "
                      f"{1000 * r['seconds'] / r['processed']:7.1f} ms/photo wall, "
                      f"{1000 * r['cpu_seconds'] / r['processed']:7.1f} CPU; full collections {r['full_collections']} "
                      f"({1000 * r['full_collection_seconds']:.0f} ms), load {r['load']:.1f}", flush=True)
    print("\n| folder | photos | plain wall ms/photo (median) | frozen | ÷ | plain CPU ms/photo | frozen | "
          "full collections plain / frozen (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cases in results.items():
        med = {k: statistics.median(1000 * r["seconds"] / r["processed"] for r in v) for k, v in cases.items()}
        cpu = {k: statistics.median(1000 * r["cpu_seconds"] / r["processed"] for r in v) for k, v in cases.items()}
        col = {k: statistics.median(1000 * r["full_collection_seconds"] for r in v) for k, v in cases.items()}
        print(f"| {name} | {cases['plain'][0]['processed']} | {med['plain']:.1f} | {med['frozen']:.1f} | "
              f"{med['frozen'] / med['plain']:.2f} | {cpu['plain']:.1f} | {cpu['frozen']:.1f} | "
              f"{col['plain']:.0f} / {col['frozen']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                         "model": args.model, "working_long_side": size, "results": results},
                                        indent=1))


if __name__ == "__main__":
    main()
