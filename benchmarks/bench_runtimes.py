"""Inference runtimes side by side on the shipped model: ms per image at batch 1 and 8, 1 and 2 threads,
and each runtime's largest map difference from eager PyTorch.

Usage:
    python benchmarks/bench_runtimes.py                       # every installed runtime
    python benchmarks/bench_runtimes.py --runtimes eager onnxruntime --reps 5

Input: a 4:3 photo at the shipped weights' working size (the card's: 240×320 since stage 10; `--size HxW`
to choose), real-looking content. Each runtime is
measured in its own process (threads cannot be changed reliably after a runtime starts); best of --reps.
Preparation (export, trace, compile) is timed separately and not counted per image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, os
args = json.loads(sys.argv[1])
import numpy as np, torch
torch.set_num_threads(args["threads"])
from exposure_cli.weights import load_model, resolve_weights
from exposure_cli.runtimes import build_runner, Runtime
model, _ = load_model(resolve_weights(None), "cpu")
rng = np.random.default_rng(0)
import cv2, skimage.data as skd
h, w = args["size"]
imgs = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        for im in (skd.astronaut(), skd.coffee(), skd.chelsea(), skd.rocket())]
x8 = torch.from_numpy(np.stack([imgs[i % 4] for i in range(8)])).permute(0, 3, 1, 2).contiguous()
ref_run = build_runner(model, "eager")
ref = ref_run(x8.contiguous(memory_format=torch.channels_last))
t0 = time.perf_counter()
run = build_runner(model, args["runtime"])
out = {"runtime": args["runtime"], "threads": args["threads"]}
xin = x8.contiguous(memory_format=torch.channels_last) if args["runtime"] in ("eager", "compile") else x8
got = run(xin)
out["prepare_s"] = time.perf_counter() - t0
out["max_abs_diff"] = float(np.abs(got - ref).max())
out["mean_abs_diff"] = float(np.abs(got - ref).mean())
for b in (1, 8):
    x = xin[:b]
    run(x)
    best = best_cpu = float("inf")
    for _ in range(args["reps"]):
        t, c = time.perf_counter(), time.process_time(); run(x)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    out[f"batch{b}_ms"] = 1000 * best / b
    out[f"batch{b}_cpu_ms"] = 1000 * best_cpu / b  # all threads' CPU: steadier than wall on a loaded machine
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtimes", nargs="*", default=None)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", default=None, help="input H×W, e.g. 384x512 (default: 4:3 at the card's working size)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "runtimes.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from exposure_cli.runtimes import Runtime, missing_modules

    names = args.runtimes or [r.value for r in Runtime]
    if args.size:
        size = [int(v) for v in args.size.lower().split("x")]
    else:
        from exposure_cli.weights import resolve_weights, verify_weights

        long_side = int(verify_weights(resolve_weights(None)).card.get("working_long_side") or 512)
        size = [round(long_side * 3 / 4), long_side]
    print(f"input {size[0]}×{size[1]}", flush=True)
    load = os.getloadavg()
    rows = []
    for name in names:
        miss = missing_modules(name)
        if miss:
            print(f"{name}: skipped, not installed ({', '.join(miss)})", flush=True)
            continue
        for threads in args.threads:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
            proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"runtime": name, "threads": threads,
                                   "reps": args.reps, "size": size})], capture_output=True, cwd=ROOT, env=env)
            if proc.returncode != 0:
                err = proc.stderr.decode().strip().splitlines()[-1:] or ["?"]
                print(f"{name} ({threads} thr): FAILED: {err[0]}", flush=True)
                rows.append({"runtime": name, "threads": threads, "error": err[0]})
                continue
            r = json.loads(proc.stdout.decode().strip().splitlines()[-1])
            rows.append(r)
            print(f"{name:18s} {threads} thr  b1 {r['batch1_ms']:7.1f}  b8 {r['batch8_ms']:7.1f} ms/img  "
                  f"CPU b1 {r['batch1_cpu_ms']:7.1f}  b8 {r['batch8_cpu_ms']:7.1f}  "
                  f"prep {r['prepare_s']:5.1f} s  max|Δ| {r['max_abs_diff']:.2e}", flush=True)
    end = os.getloadavg()
    print(f"\nload average {load[0]:.1f} → {end[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    eager = {r["threads"]: r for r in rows if r["runtime"] == "eager" and "error" not in r}
    print("\n| runtime | threads | batch 1 ms/img | batch 8 ms/img | ÷ eager (b8) | batch 1 CPU ms/img | batch 8 CPU ms/img "
          "| CPU ÷ eager (b8) | prepare s | max abs diff vs eager |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['runtime']} | {r['threads']} | failed: {r['error']} | | | | | | | |")
            continue
        e = eager.get(r["threads"])
        ratio = r["batch8_ms"] / e["batch8_ms"] if e else float("nan")
        cpu_ratio = r["batch8_cpu_ms"] / e["batch8_cpu_ms"] if e else float("nan")
        print(f"| {r['runtime']} | {r['threads']} | {r['batch1_ms']:.1f} | {r['batch8_ms']:.1f} | {ratio:.2f} | "
              f"{r['batch1_cpu_ms']:.1f} | {r['batch8_cpu_ms']:.1f} | {cpu_ratio:.2f} | "
              f"{r['prepare_s']:.1f} | {r['max_abs_diff']:.1e} |")
    args.json.write_text(json.dumps({"load_average": [load, end], "size": size, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
