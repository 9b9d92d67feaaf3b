"""Scale-out benchmark: the local engine vs the Ray engine with 1 and 2 workers, plus per-image costs.

Usage:
    python benchmarks/bench_scale.py                       # baseline + EAT (random weights), 96 photos
    python benchmarks/bench_scale.py --files 48 --models baseline --json /tmp/scale.json

It generates its own JPEGs (cached under --data) and, for the ``eat`` model, a full-size EAT-IEA network
with random weights saved as safetensors (inference cost does not depend on the weight values). Then:

1. **per-image costs** in one thread: decode (``decode_item``, reduced JPEG decode), model
   (``analyze_batch`` in batches of 8), statistics + regions (``BatchProcessor.process`` minus the model);
2. **driver ingest**: rows per second the driver can take back from Ray (JSON parse + journal append with
   one fsync per batch) — the ceiling of the "rows back to the driver" design;
3. **end-to-end** ``scan()``: local engine, then Ray with ``concurrency`` 1 and 2 on one private local
   Ray instance (its start-up is timed once, separately). ``wall`` includes the actors' start and model
   load; ``steady`` is first row → last row (what a long job sees).

Prints a table and writes JSON (machine, load average, every number). docs/SCALE.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_photos(folder: Path, n: int, width: int, height: int) -> Path:
    """n photo-like JPEGs (smooth gradients, blobs, grain; varied exposure), cached."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"img_{i:05d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        base = 0.2 + 0.6 * (x / width) * (0.5 + 0.5 * np.sin(y / height * 3.1 + i))
        img = np.stack([base, base * 0.9 + 0.05, base * 0.8 + 0.1], axis=-1)
        for _ in range(8):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(20, width / 3)
            img += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(-0.3, 0.3, 3)
        img = np.clip(img * rng.uniform(0.3, 1.8) + rng.normal(0, 0.02, img.shape), 0, 1)
        ok, buf = cv2.imencode(".jpg", (img[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        path.write_bytes(buf.tobytes())
    return folder


def random_eat_weights(folder: Path) -> Path:
    """The full EAT-IEA network with random weights, saved like trained ones (cached)."""
    from exposure_cli.analyzers.eat import save_weights
    from exposure_cli.models import create_model, model_config

    target = folder / "model.safetensors"
    if not target.exists():
        import torch

        torch.manual_seed(0)
        save_weights(create_model("eat_iea"), folder, {"architecture": "eat_iea", "config": model_config("eat_iea")})
    return folder


def per_image_costs(photos: list[Path], model: str, weights: str | None) -> dict:
    """Single-thread seconds per image for decode, model, statistics + regions."""
    import torch

    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.discovery import discover
    from exposure_cli.pipeline import BatchProcessor, ScanOptions, decode_item
    from exposure_cli.stats import Thresholds

    torch.set_num_threads(1)
    items = list(discover([photos[0].parent]))[: min(len(photos), 24)]
    options = ScanOptions()
    analyzer = create_analyzer(model, weights=weights, device="cpu", batch_size=8)
    t = time.perf_counter()
    decoded = [decode_item(it, options, analyzer.working_long_side) for it in items]
    decode_s = (time.perf_counter() - t) / len(items)
    t = time.perf_counter()
    for start in range(0, len(decoded), 8):
        analyzer.analyze_batch([d.image.rgb for d in decoded[start:start + 8]])
    model_s = (time.perf_counter() - t) / len(items)
    processor = BatchProcessor(analyzer, Thresholds(), (), None, regions=True)
    t = time.perf_counter()
    for start in range(0, len(decoded), 8):
        processor.process(decoded[start:start + 8])
    process_s = (time.perf_counter() - t) / len(items)
    analyzer.close()
    return {"decode_s": decode_s, "model_s": model_s, "stats_regions_s": max(0.0, process_s - model_s),
            "images": len(items), "analysis_shape": list(decoded[0].image.rgb.shape[:2])}


def driver_ingest(sample_row: dict, rows: int = 20000, batch: int = 8) -> dict:
    """Rows/s the driver ingests: JSON parse (as rows arrive from Ray) + journal append, fsync per batch."""
    from exposure_cli.report.writers import Journal, row_to_json

    text = row_to_json(sample_row)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp))
        journal.open()
        t = time.perf_counter()
        for _ in range(rows // batch):
            journal.append([json.loads(text) for _ in range(batch)])
        ingest = time.perf_counter() - t
        journal.close()
    return {"rows_per_s": rows / ingest, "batch": batch, "row_bytes": len(text)}


def timed_scan(paths, **options) -> dict:
    from exposure_cli.pipeline import scan

    stamps: list[float] = []
    t = time.perf_counter()
    result = scan(paths, progress=lambda done, errors, n: stamps.append(time.perf_counter()), **options)
    wall = time.perf_counter() - t
    n = result.processed
    steady = None
    if len(stamps) > 2:
        # rows after the first batch, over the time since the first batch came back
        first_batch = n / len(stamps)
        steady = (n - first_batch) / (stamps[-1] - stamps[0]) if stamps[-1] > stamps[0] else None
    return {"images": n, "errors": result.errors, "wall_s": wall, "images_per_s": n / wall,
            "steady_images_per_s": steady}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/exposure-bench-scale"))
    ap.add_argument("--files", type=int, default=96)
    ap.add_argument("--size", default="1600x1200", help="photo size WxH")
    ap.add_argument("--models", default="baseline,eat")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results_scale.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = make_photos(args.data / f"photos_{width}x{height}", args.files, width, height)
    photos = sorted(folder.glob("*.jpg"))[: args.files]
    if len(photos) < len(list(folder.glob("*.jpg"))):  # a cache with more files: scan exactly --files
        folder = args.data / f"photos_{width}x{height}_{args.files}"
        folder.mkdir(exist_ok=True)
        for p in photos:
            if not (folder / p.name).exists():
                os.link(p, folder / p.name)
        photos = sorted(folder.glob("*.jpg"))
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "loadavg_start": os.getloadavg()},
           "files": len(photos), "size": [width, height], "models": {}}

    from exposure_cli.engines import prepare_ray_environment

    prepare_ray_environment(loopback=True)
    import ray

    from exposure_cli.engines.ray_engine import local_instance_kwargs

    t = time.perf_counter()
    ray.init(**local_instance_kwargs())
    out["ray_init_s"] = time.perf_counter() - t
    print(f"ray.init (local, {os.cpu_count()} CPUs): {out['ray_init_s']:.1f} s", flush=True)
    try:
        for model in args.models.split(","):
            weights = str(random_eat_weights(args.data / "eat_random")) if model == "eat" else None
            res: dict = {"per_image": per_image_costs(photos, model, weights), "scans": {}}
            pi = res["per_image"]
            print(f"[{model}] per image, 1 thread: decode {pi['decode_s'] * 1e3:.1f} ms, model "
                  f"{pi['model_s'] * 1e3:.1f} ms, stats+regions {pi['stats_regions_s'] * 1e3:.1f} ms", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                common = dict(model=model, weights=weights, device="cpu", batch_size=8)
                cases = [("local", {})] + [(f"ray x{w}", {"engine": "ray", "concurrency": int(w)})
                                           for w in args.workers.split(",")]
                for name, extra in cases:
                    r = timed_scan([folder], out=Path(tmp) / name.replace(" ", "_"), **common, **extra)
                    res["scans"][name] = r
                    steady = r["steady_images_per_s"]
                    print(f"[{model}] {name:8s}: {r['images']} images in {r['wall_s']:.1f} s = "
                          f"{r['images_per_s']:.2f} img/s (steady {steady and f'{steady:.2f}'} img/s)", flush=True)
                from exposure_cli.report.writers import Journal

                sample = next(Journal(Path(tmp) / "local").rows())  # a real row, as the driver receives it
            out["models"][model] = res
        from exposure_cli.engines.ray_engine import FLUSH_ROWS

        out["driver_ingest"] = [driver_ingest(sample, batch=b) for b in (8, FLUSH_ROWS)]
        for d in out["driver_ingest"]:
            print(f"driver ingest: {d['rows_per_s']:.0f} rows/s ({d['row_bytes']} B/row, fsync per {d['batch']} rows)")
    finally:
        ray.shutdown()
    out["machine"]["loadavg_end"] = os.getloadavg()
    args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
