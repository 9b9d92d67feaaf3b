"""What the eat network costs per image at the sizes a 64×48 thumbnail could be analysed at.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_small_network.py

One torch thread, batch 8 of random images at 64×64 (own size, padded), 96×128, 192×256 and 384×512 (the
512 working copy); prints the best of three CPU and wall times per image and the load average.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from exposure_cli.analyzers import create_analyzer

    torch.set_num_threads(1)
    model = create_analyzer("eat", device="cpu").model
    print("load", os.getloadavg())
    for h, w in [(64, 64), (96, 128), (192, 256), (384, 512)]:
        x = torch.rand(8, 3, h, w).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(x)
            best_cpu = best_wall = float("inf")
            for _ in range(3):
                c, t = time.process_time(), time.perf_counter()
                model(x)
                best_cpu, best_wall = min(best_cpu, time.process_time() - c), min(best_wall, time.perf_counter() - t)
        print(f"{h}x{w}: {best_cpu / 8 * 1000:.1f} ms CPU/image, {best_wall / 8 * 1000:.1f} ms wall/image", flush=True)
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
