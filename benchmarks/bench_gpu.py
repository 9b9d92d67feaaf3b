"""GPU benchmark, prepared for a machine with CUDA (run it when one is lent; CPU-only machines exit).

Usage (on the GPU machine, from the repository root, after `pip install torch==<cuda build> -e .`):
    python benchmarks/bench_gpu.py --json benchmarks/results_gpu.json

Measures, side by side in one run:
* model-only throughput at 512×512 (bf16 autocast, channels-last), batch 32/64/128/256, eager and
  `torch.compile` (when it compiles);
* the decode floor of 12 MP JPEGs with a thread pool of one thread per core, and end-to-end
  `exposure scan --device cuda` on the same files — the ratio says whether the scan is decode-bound.
Target from issue 6 (H200): ≥ 2,000 images/s model-only at 512×512; end-to-end bound by decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def model_only(batches=(32, 64, 128, 256), size=512, seconds=5.0, compile_=False) -> dict:
    import torch

    from exposure_cli.analyzers import create_analyzer

    analyzer = create_analyzer("eat", device="cuda", working_long_side=size)
    net = analyzer.model
    if compile_:
        net = torch.compile(net, mode="max-autotune-no-cudagraphs")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    out = {}
    for b in batches:
        x = torch.rand(b, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
            for _ in range(3):
                net(x)
            torch.cuda.synchronize()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                net(x)
                n += b
            torch.cuda.synchronize()
        out[str(b)] = n / (time.perf_counter() - t0)
        print(f"  batch {b:4d}{' compiled' if compile_ else ''}: {out[str(b)]:9.0f} img/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/exposure-bench-gpu"))
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results_gpu.json")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark is for a GPU machine (see docs/PERFORMANCE.md)")
    from bench_scan import DECODE_SNIPPET, SCAN_SNIPPET, make_jpegs, run_child

    res: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cpu_count": os.cpu_count()}
    print("model only …", flush=True)
    res["model_only_eager"] = model_only()
    try:
        res["model_only_compiled"] = model_only(compile_=True)
    except Exception as exc:  # compile support varies by toolchain
        res["model_only_compiled"] = f"failed: {type(exc).__name__}: {exc}"
    print("generating 12 MP JPEGs …", flush=True)
    folder = make_jpegs(args.data / "12mp", args.files, 4000, 3000)
    cores = os.cpu_count() or 8
    floor = run_child(DECODE_SNIPPET, {"folder": str(folder), "workers": cores})
    res["decode_floor"] = {"images_per_second": floor["processed"] / floor["seconds"]}
    for batch in (32, 64):
        r = run_child(SCAN_SNIPPET, {"paths": [str(folder)], "out": str(args.data / f"out{batch}"), "threads": 4,
                                     "model": "eat", "device": "cuda", "batch_size": batch, "workers": cores})
        res[f"scan_batch{batch}"] = {"images_per_second": r["processed"] / r["seconds"],
                                     "peak_rss_mb": r["peak_rss_mb"]}
    res["scan_over_decode_floor"] = (res["decode_floor"]["images_per_second"]
                                     / res["scan_batch64"]["images_per_second"])
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
