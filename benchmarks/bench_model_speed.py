"""EAT network on the CPU: the trained module (reference) against its folded inference copy, side by side.

Both run on one thread under ``torch.inference_mode`` in channels-last layout, as the analyzer runs them:
the reference is ``EATIEA`` in eval mode (what training builds), the fast one is
``exposure_cli.models.eat_iea_inference.fold_for_inference`` of it. For each batch size and input size
the two are timed in turns (reference, fast, reference, ...) and the best of the rounds is kept, so a
loaded machine slows both alike; read the ratio, not the absolute numbers. Wall time and process CPU time
are both reported (CPU time is steadier while other jobs compete for the cores), with the load average.

    python benchmarks/bench_model_speed.py                      # shipped weights, writes model_speed.json
    python benchmarks/bench_model_speed.py --rounds 7 --sizes 96x128 192x256 --batches 1 8
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
sys.path.insert(0, str(ROOT))  # this checkout's package, not another installed copy


def _time_once(model, x) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    model(x)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(reference, fast, batch: int, size: tuple[int, int], rounds: int) -> dict:
    import torch

    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    best = {"reference": [float("inf"), float("inf")], "fast": [float("inf"), float("inf")]}
    with torch.inference_mode():
        diff = float((reference(x) - fast(x)).abs().max())  # also the warm-up
        for _ in range(rounds):
            for name, model in (("reference", reference), ("fast", fast)):
                wall, cpu = _time_once(model, x)
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    ms = {name: {"wall_ms_per_image": 1e3 * w / batch, "cpu_ms_per_image": 1e3 * c / batch}
          for name, (w, c) in best.items()}
    return {
        "batch": batch,
        "size": f"{size[0]}x{size[1]}",
        **{f"{name}_{key}": round(value, 2) for name, row in ms.items() for key, value in row.items()},
        "wall_ratio": round(ms["reference"]["wall_ms_per_image"] / ms["fast"]["wall_ms_per_image"], 2),
        "cpu_ratio": round(ms["reference"]["cpu_ms_per_image"] / ms["fast"]["cpu_ms_per_image"], 2),
        "max_abs_diff": diff,
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights file or folder (default: the shipped weights)")
    parser.add_argument("--sizes", nargs="+", default=["96x128", "192x256", "384x512"], help="H×W inputs")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per model and configuration")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).with_name("model_speed.json")))
    args = parser.parse_args(argv)

    import torch

    from exposure_cli.models.eat_iea_inference import fold_for_inference
    from exposure_cli.weights import load_model, resolve_weights

    torch.set_num_threads(args.threads)
    reference, loaded = load_model(resolve_weights(args.weights), "cpu")
    reference = reference.to(memory_format=torch.channels_last)
    fast = fold_for_inference(reference)
    load_before = os.getloadavg()
    print(f"# torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"best of {args.rounds} interleaved rounds", flush=True)
    header = (f"{'batch':>5} {'size':>8} | {'ref wall':>8} {'fast wall':>9} {'ratio':>5} | "
              f"{'ref cpu':>7} {'fast cpu':>8} {'ratio':>5} | {'max|diff|':>9} {'load':>5}   (ms per image)")
    print(header)
    rows = []
    for batch in args.batches:
        for text in args.sizes:
            h, w = (int(v) for v in text.lower().split("x"))
            row = measure(reference, fast, batch, (h, w), args.rounds)
            rows.append(row)
            print(f"{batch:>5} {row['size']:>8} | {row['reference_wall_ms_per_image']:>8.1f} "
                  f"{row['fast_wall_ms_per_image']:>9.1f} {row['wall_ratio']:>5.2f} | "
                  f"{row['reference_cpu_ms_per_image']:>7.1f} {row['fast_cpu_ms_per_image']:>8.1f} "
                  f"{row['cpu_ratio']:>5.2f} | {row['max_abs_diff']:>9.1e} {row['loadavg_1min']:>5.2f}", flush=True)
    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "rounds": args.rounds,
        "weights_sha256": loaded.sha256,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"# wrote {args.out}; load average after {result['loadavg_after'][0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
