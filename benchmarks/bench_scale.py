"""Scale-out benchmark: the local engine vs the Ray engine with 1 and 2 workers, plus per-image costs.

Usage:
    python benchmarks/bench_scale.py                       # baseline + EAT (random weights), 96 photos, 2 runs each
    python benchmarks/bench_scale.py --files 48 --models baseline --json /tmp/scale.json

It generates its own JPEGs (cached under --data) and, for the ``eat`` model, a full-size EAT-IEA network
with random weights saved as safetensors (inference cost does not depend on the weight values). Then:

1. **per-image costs** in one thread: decode (``decode_item``, reduced JPEG decode), model
   (``analyze_batch`` in batches of 8), statistics + regions (``BatchProcessor.process`` minus the model);
2. **driver ingest**: rows per second the driver can take back from Ray (JSON parse + journal append with
   one fsync per batch) — the ceiling of the "rows back to the driver" design;
3. **end-to-end** ``scan()``: local engine, then Ray with ``concurrency`` 1 and 2 on one private local
   Ray instance (its start-up is timed once, separately). Each case scans ``--small`` photos and then
   all ``--files``: ``wall`` includes the actors' start and model load; ``marginal`` = extra photos ÷
   extra seconds, the fixed costs cancelling out (what a long job sees). Cases run interleaved
   ``--repeat`` times and the best of each is kept, because a shared machine's load drifts.

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
    from exposure_cli.weights import save_weights
    from exposure_cli.models import create_model, model_config

    target = folder / "model.safetensors"
    if not target.exists():
        import torch

        torch.manual_seed(0)
        save_weights(create_model("eat_iea"), folder, {"architecture": "eat_iea", "config": model_config("eat_iea")})
    return folder


def per_image_costs(photos: list[Path], model: str, weights: str | None, reps: int = 3) -> dict:
    """Single-thread seconds per image (best of `reps`): decode, model (network + CPU upsampling for
    ``eat``), statistics + regions + rows."""
    import torch

    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.discovery import discover
    from exposure_cli.pipeline import BatchProcessor, ScanOptions, decode_item
    from exposure_cli.stats import Thresholds

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    items = list(discover([photos[0].parent]))[: min(len(photos), 24)]
    options = ScanOptions()
    analyzer = create_analyzer(model, weights=weights, device="cpu", batch_size=8)
    batches = range(0, len(items), 8)

    cpu_seconds: dict[str, float] = {}

    def best(fn, name: str) -> float:
        """Best wall time per image; the CPU time of that run goes to cpu_seconds (robust to a busy machine)."""
        runs = []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            fn()
            runs.append((time.perf_counter() - t, time.process_time() - c))
        wall, cpu = min(runs)
        cpu_seconds[name] = cpu / len(items)
        return wall / len(items)

    decoded: list = []
    decode_s = best(lambda: decoded.__setitem__(slice(None), [decode_item(it, options, analyzer.working_long_side)
                                                              for it in items]), "decode_s")
    maps: list = []
    model_s = best(lambda: maps.__setitem__(slice(None), [analyzer.analyze_batch([d.image.rgb for d in decoded[i:i + 8]])
                                                          for i in batches]), "model_s")
    network_s = None
    if hasattr(analyzer, "_run"):  # eat: the network alone, on the working-size images
        import cv2

        from exposure_cli.imageops import working_size

        small = []
        for d in decoded:
            h, w = working_size(*d.image.rgb.shape[:2], analyzer.working_long_side)
            small.append(cv2.resize(d.image.rgb, (w, h), interpolation=cv2.INTER_AREA))
        network_s = best(lambda: [analyzer._run(small[i:i + 8]) for i in batches], "network_s")

    class Replay:
        """Returns the maps computed above, so only statistics, regions and rows are timed."""

        info = analyzer.info
        working_long_side = analyzer.working_long_side

        def __init__(self) -> None:
            self.queue: list = []

        def analyze_batch(self, images):
            return self.queue.pop(0)

    replay = Replay()
    processor = BatchProcessor(replay, Thresholds(), (), None, regions=True)  # type: ignore[arg-type]

    def process_all() -> None:
        replay.queue = list(maps)
        for i in batches:
            processor.process(decoded[i:i + 8])

    stats_s = best(process_all, "stats_regions_s")
    analyzer.close()
    torch.set_num_threads(threads)  # the local-engine scans that follow use every core
    return {"decode_s": decode_s, "model_s": model_s, "network_s": network_s, "stats_regions_s": stats_s,
            "cpu_s": cpu_seconds, "images": len(items), "analysis_shape": list(decoded[0].image.rgb.shape[:2]),
            "reps": reps}


def driver_ingest(sample_row: dict, rows: int = 20000, batch: int = 8) -> dict:
    """Rows/s the driver ingests: JSON parse (as rows arrive from Ray) + journal append, fsync per batch."""
    from exposure_cli.outdir import Journal
    from exposure_cli.report.writers import row_to_json

    text = row_to_json(sample_row)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp))
        journal.open()
        t, c = time.perf_counter(), time.process_time()
        for _ in range(rows // batch):
            journal.append([json.loads(text) for _ in range(batch)])
        ingest, cpu = time.perf_counter() - t, time.process_time() - c
        journal.close()
    return {"rows_per_s": rows / ingest, "cpu_us_per_row": cpu / rows * 1e6, "batch": batch, "row_bytes": len(text)}


def timed_scan(paths, **options) -> dict:
    from exposure_cli.pipeline import scan

    t = time.perf_counter()
    result = scan(paths, **options)
    wall = time.perf_counter() - t
    return {"images": result.processed, "errors": result.errors, "wall_s": wall,
            "images_per_s": result.processed / wall}


def linked_subset(photos: list[Path], folder: Path) -> Path:
    """A folder of hard links to `photos` (scan exactly these, whatever the cache holds)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        if not (folder / p.name).exists():
            os.link(p, folder / p.name)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/exposure-bench-scale"))
    ap.add_argument("--files", type=int, default=96)
    ap.add_argument("--size", default="1600x1200", help="photo size WxH")
    ap.add_argument("--models", default="baseline,eat")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    ap.add_argument("--small", type=int, default=16, help="photos in the small scan that measures fixed costs")
    ap.add_argument("--costs-only", action="store_true", help="only the per-image costs (no Ray, no scans)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case (interleaved); the best is reported")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results_scale.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = make_photos(args.data / f"photos_{width}x{height}", args.files, width, height)
    photos = sorted(folder.glob("*.jpg"))[: args.files]
    full = linked_subset(photos, args.data / f"scan_{width}x{height}_{len(photos)}")
    small = linked_subset(photos[: args.small], args.data / f"scan_{width}x{height}_{args.small}")
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "loadavg_start": os.getloadavg()},
           "files": len(photos), "size": [width, height], "models": {}}

    if args.costs_only:
        for model in args.models.split(","):
            weights = str(random_eat_weights(args.data / "eat_random")) if model == "eat" else None
            out["models"][model] = {"per_image": per_image_costs(photos, model, weights)}
            print(model, {k: round(v * 1e3, 2) if isinstance(v, float) else v
                          for k, v in out["models"][model]["per_image"].items()})
        from exposure_cli.engines.ray_engine import FLUSH_ROWS
        from exposure_cli.pipeline import scan
        from exposure_cli.outdir import Journal

        with tempfile.TemporaryDirectory() as tmp:
            scan([small], out=Path(tmp), model="baseline")
            sample = next(r for r in Journal(Path(tmp)).rows() if r["status"] == "ok")
        out["driver_ingest"] = [driver_ingest(sample, batch=b) for b in (8, FLUSH_ROWS)]
        print("driver ingest", out["driver_ingest"])
        out["machine"]["loadavg_end"] = os.getloadavg()
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        return

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
            net = f" (network {pi['network_s'] * 1e3:.1f} ms)" if pi["network_s"] else ""
            print(f"[{model}] per image, 1 thread, best of {pi['reps']}: decode {pi['decode_s'] * 1e3:.1f} ms, model "
                  f"{pi['model_s'] * 1e3:.1f} ms{net}, stats+regions {pi['stats_regions_s'] * 1e3:.1f} ms", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                common = dict(model=model, weights=weights, device="cpu", batch_size=8)
                cases = [("local", {})] + [(f"ray x{w}", {"engine": "ray", "concurrency": int(w)})
                                           for w in args.workers.split(",")]
                runs: dict[str, list[dict]] = {name: [] for name, _ in cases}
                for rep in range(args.repeat):  # interleaved, so load drift hits every case alike
                    for name, extra in cases:
                        tag = f"{name.replace(' ', '_')}_{rep}"
                        few = timed_scan([small], out=Path(tmp) / f"{tag}_small", **common, **extra)
                        many = timed_scan([full], out=Path(tmp) / tag, **common, **extra)
                        # the fixed cost (start-up, model load) cancels out of the difference
                        extra_s = many["wall_s"] - few["wall_s"]
                        marginal = (many["images"] - few["images"]) / extra_s if extra_s > 0 else float("nan")
                        runs[name].append({"small": few, "full": many, "marginal_images_per_s": marginal})
                        print(f"[{model}] {name:8s} #{rep + 1}: {few['images']} images in {few['wall_s']:.1f} s, "
                              f"{many['images']} in {many['wall_s']:.1f} s = {many['images_per_s']:.2f} img/s; "
                              f"marginal {marginal:.2f} img/s", flush=True)
                for name, rs in runs.items():
                    res["scans"][name] = {
                        "best_small_wall_s": min(r["small"]["wall_s"] for r in rs),
                        "best_full_wall_s": min(r["full"]["wall_s"] for r in rs),
                        "best_images_per_s": max(r["full"]["images_per_s"] for r in rs),
                        "best_marginal_images_per_s": max((r["marginal_images_per_s"] for r in rs
                                                           if r["marginal_images_per_s"] == r["marginal_images_per_s"]),
                                                          default=None),
                        "median_full_wall_s": float(np.median([r["full"]["wall_s"] for r in rs])),
                        "median_marginal_images_per_s": float(np.nanmedian([r["marginal_images_per_s"] for r in rs])),
                        "runs": rs,
                    }
                from exposure_cli.outdir import Journal

                sample = next(Journal(Path(tmp) / "local_0").rows())  # a real row, as the driver receives it
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
