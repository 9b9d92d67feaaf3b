"""Model size and speed: parameters, GFLOPs and milliseconds per image at a working resolution.

Run: ``python -m exposure_cli.training.benchmark [--model eat_iea] [--size 512] [--threads 2]``.
Prints one JSON object. Timing = median over ``--repeats`` forward passes after ``--warmup`` passes, in
``torch.inference_mode`` with channels-last tensors (the analyzer's settings). FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls and attention; 1 multiply-add = 2
FLOPs); element-wise operations are not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def measure(model_name: str = "eat_iea", size: int = 512, threads: int = 2, batches: tuple[int, ...] = (1, 8),
            warmup: int = 2, repeats: int = 7, device: str = "cpu") -> dict:
    """Parameters, GFLOPs per image and ms per image for each batch size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name).eval().to(device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size, device=device))
    model = model.to(memory_format=torch.channels_last)
    result = {
        "model": model_name,
        "size": size,
        "threads": threads,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops_per_image": round(counter.get_total_flops() / 1e9, 3),
    }
    for batch in batches:
        x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(x)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
        result[f"ms_per_image_batch{batch}"] = round(1000 * statistics.median(times) / batch, 1)
        result[f"ms_per_image_batch{batch}_best"] = round(1000 * min(times) / batch, 1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="eat_iea")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    print(json.dumps(measure(args.model, args.size, args.threads, batches, repeats=args.repeats, device=args.device)))


if __name__ == "__main__":
    main()
