"""Per-photo cost breakdown of a scan of 12 MP JPEGs, stage by stage, on one thread.

Usage:
    python benchmarks/profile_scan.py                      # 12 photos, table of median ms per photo
    python benchmarks/profile_scan.py --cprofile 20        # also: cProfile of the scan's own per-photo code
    python benchmarks/profile_scan.py --json out.json

Every stage is the library's own function, called in the order the scan calls it, on the same photos the
benchmark suite generates (``benchmarks/bench_scan.py``'s inputs, cached under --data). The model runs at
batch 8 (the scan's default) and its time is divided by 8. The scan overlaps these stages on its threads;
this table says what each costs, not what the wall clock sees (``bench_scan.py`` measures that).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _timer(store: dict, name: str):
    """Wall and CPU time of a block. Everything runs on one thread, so the process's CPU time is the
    stage's own: on a loaded machine it moves far less than the wall clock (which counts time waiting
    for a core)."""
    class _T:
        def __enter__(self):
            self.t, self.c = time.perf_counter(), time.process_time()

        def __exit__(self, *exc):
            store.setdefault(name, []).append(1000 * (time.perf_counter() - self.t))
            store.setdefault(CPU + name, []).append(1000 * (time.process_time() - self.c))

    return _T()


CPU = "cpu:"


def profile(files: list[Path], runtime: str | None, model: str | None, size: int = 512) -> dict[str, float]:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from exposure_cli import regions as R
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.color import grey
    from exposure_cli.decoding import decode_file, limit_long_side
    from exposure_cli.discovery import InputFile
    from exposure_cli.imageops import map_to_image_size, to_working_size
    from exposure_cli.pipeline import BatchProcessor, Decoded
    from exposure_cli.report.overlays import render_overlay
    from exposure_cli.outdir import Journal
    from exposure_cli.rules import load_rule_sets, score_row
    from exposure_cli.stats import Thresholds, image_stats

    kw = {"runtime": runtime} if runtime else {}
    analyzer = create_analyzer(model, working_long_side=size, batch_size=8, device="cpu", **kw)
    thresholds = Thresholds()
    rule_sets = load_rule_sets(["default", "portrait", "landscape-strict"])
    t: dict[str, list[float]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="exposure-profile-"))
    journal = Journal(tmp)
    journal.open()
    proc = BatchProcessor(analyzer, thresholds, [], None, regions=True)
    # warm-up (first kernels, cascade load)
    warm = decode_file(files[0], target_long_side=size, analysis_long_side=1024)
    analyzer.analyze_batch([warm.rgb])
    R.compute_regions(limit_long_side(warm.rgb, size))

    decoded = []
    for f in files:
        with _timer(t, "decode, full resolution (cv2.imread; reference, not in the scan)"):
            cv2.imread(str(f))
        with _timer(t, "decode at reduced scale + EXIF + float (decode_file)"):
            d = decode_file(f, target_long_side=size, analysis_long_side=1024)
        decoded.append(d)
    smalls = []
    for d in decoded:
        with _timer(t, f"resize to working size ({size})"):
            smalls.append(to_working_size(d.rgb, size))
    maps_low = []
    net = getattr(analyzer, "_run", None)
    for start in range(0, len(smalls), 8):
        chunk = smalls[start:start + 8]
        t0, c0 = time.perf_counter(), time.process_time()
        if net is not None:
            maps_low.extend(net(chunk))
        else:
            maps_low.extend(analyzer.analyze_batch(chunk))
        per = 1000 * (time.perf_counter() - t0) / len(chunk)
        cpu = 1000 * (time.process_time() - c0) / len(chunk)
        t.setdefault("model: network, batch 8 (per photo)", []).extend([per] * len(chunk))
        t.setdefault(CPU + "model: network, batch 8 (per photo)", []).extend([cpu] * len(chunk))
    residuals = []
    for d, small, low in zip(decoded, smalls, maps_low):
        with _timer(t, "maps: guided upsampling to analysis size"):
            residuals.append(map_to_image_size(low, small, d.rgb))

    have_split = hasattr(R, "region_inputs")
    for d, res in zip(decoded, residuals):
        # regions, detector by detector (the same calls compute_regions makes)
        with _timer(t, "regions: small copy"):
            small = R.region_inputs(d.rgb) if have_split else _old_small(R, limit_long_side(d.rgb, size))
        img_small, g = small
        with _timer(t, "regions: face (LBP cascade)"):
            faces = R.detect_faces(g)
        with _timer(t, "regions: person (face + torso)"):
            R._person_mask(faces, g.shape) if faces else None
        with _timer(t, "regions: sky"):
            sky = R._sky_mask(img_small, g)
        with _timer(t, "regions: subject (saliency)"):
            sal = 0.5 * R.spectral_residual_saliency(g) + R.colour_contrast_saliency(img_small)
            sal *= R._centre_prior(g.shape)
            if sky is not None:
                sal[sky] = 0
            R._subject_mask(sal / max(float(sal.max()), 1e-6))
        with _timer(t, "regions: all, as the scan calls them (incl. masks to analysis size)"):
            masks = proc._masks(d.rgb)
        with _timer(t, "statistics: grey of the photo"):
            g_full = grey(d.rgb)
        with _timer(t, "statistics: all regions incl. ev_correction (image_stats)"):
            row = image_stats(res, masks, thresholds, grey=g_full, ev_calibration=analyzer.ev_calibration)
        with _timer(t, "statistics: without ev_correction (grey=None)"):
            image_stats(res, masks, thresholds)
        row.update({"path": "x", "status": "ok", "error": None, "width": d.width, "height": d.height})
        with _timer(t, "rules: default + portrait + landscape-strict"):
            row.update(score_row(rule_sets, row, thresholds))
        with _timer(t, "journal: append one row"):
            journal.append([row])
        with _timer(t, "overlays: render + JPEG encode + write"):
            img = render_overlay(d.rgb, res, thresholds)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
            (tmp / "o.jpg").write_bytes(buf.tobytes())
        with _timer(t, "maps files: float16 .npy write"):
            with open(tmp / "m.npy", "wb") as fh:
                np.save(fh, res.astype(np.float16), allow_pickle=False)
    journal.close()

    # the scan's own per-photo finishing call (regions + statistics + row), as the finishing pool runs it
    for d, res, f in zip(decoded, residuals, files):
        with _timer(t, "finishing: one photo's row, as the scan's finishing pool runs it"):
            # the finishing step gets the map's last part as a callable (Analyzer.analyze_split); here the
            # map is ready, so it only hands it over (older trees take the map itself)
            finish = res if not hasattr(proc, "prepare") else (lambda res=res, image_grey=None: res)
            proc._finish(Decoded(InputFile(f, f.name, f.parent), image=d), finish)
    return {k: statistics.median(v) for k, v in t.items()}


def _old_small(R, rgb):
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, R.WORK_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    small = np.clip(small, 0.0, 1.0)
    from exposure_cli.color import grey

    return small, grey(small)


def cprofile(files: list[Path], top: int, runtime: str | None, size: int = 512) -> str:
    """cProfile of the scan's own per-photo code, run serially (no pools): decode → model → finishing."""
    import cProfile
    import io
    import pstats

    import torch

    torch.set_num_threads(1)
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.discovery import InputFile
    from exposure_cli.pipeline import BatchProcessor, ScanOptions, decode_item
    from exposure_cli.stats import Thresholds

    kw = {"runtime": runtime} if runtime else {}
    analyzer = create_analyzer(None, working_long_side=size, batch_size=8, device="cpu", **kw)
    proc = BatchProcessor(analyzer, Thresholds(), [], None, regions=True)
    opts = ScanOptions()
    items = [InputFile(f, f.name, f.parent) for f in files]
    proc.process([decode_item(items[0], opts, size)])  # warm-up
    pr = cProfile.Profile()
    pr.enable()
    for start in range(0, len(items), 8):
        batch = [decode_item(i, opts, size) for i in items[start:start + 8]]
        proc.process(batch)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/exposure-bench"))
    ap.add_argument("-n", type=int, default=16, help="photos (12 MP JPEGs)")
    ap.add_argument("--runtime", default=None, help="inference runtime (see exposure scan --runtime)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--cprofile", type=int, default=0, metavar="TOP", help="also print cProfile's TOP functions")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--working-size", type=int, default=None,
                    help="the working long side (default: the shipped weights card's, as the default scan)")
    args = ap.parse_args()
    from bench_scan import make_jpegs

    folder = make_jpegs(args.data / "12mp", max(args.n, 24), 4000, 3000)
    files = sorted(folder.glob("*.jpg"))[: args.n]
    load = os.getloadavg()
    from bench_scan import card_working_size

    size = args.working_size or card_working_size()
    res = profile(files, args.runtime, args.model, size)
    print(f"\n12 MP JPEG, median ms per photo over {len(files)} photos, one thread "
          f"(load average {load[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    full = res[CPU + "decode, full resolution (cv2.imread; reference, not in the scan)"]
    print("| stage | wall ms/photo | CPU ms/photo | CPU ÷ full decode's CPU |\n|---|---|---|---|")
    for k, v in res.items():
        if not k.startswith(CPU):
            print(f"| {k} | {v:.1f} | {res[CPU + k]:.1f} | {res[CPU + k] / full:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "ms_per_photo": res}, indent=2) + "\n")
    if args.cprofile:
        print(cprofile(files, args.cprofile, args.runtime, size))


if __name__ == "__main__":
    main()
