"""Small images on natural photos: simulator EV sweeps of the corpus's non-clip-art photos, shrunk first.

Usage:
    python benchmarks/bench_small_photos.py --photos corpus/photos --sizes 64 256 --json /tmp/x.json
    python benchmarks/bench_small_photos.py --weights /path/to/weights   # other weights than the shipped ones
    python benchmarks/bench_small_photos.py --sizes 64 128 --levels 320 384 512   # only these network sizes

Each photo (sources skimage, sklearn, opencv-doc, palapeli, plasma-wallpapers, lxqt-themes; no gcompris
or tuxpaint clip art) is shrunk (area) so its long side is S, then rendered at −2, 0 and +2 EV with
:func:`exposure_cli.data.simulator.render_ev` (label: the exact residual). The eat analyzer sees each
frame at long side L for L in S, 2S, … and 512 (or the ``--levels`` given, those not below S); MAE against the labels (mean over frames) and the share of
photos whose sweep reads monotonic (mean predicted residual strictly falling from −2 to 0 to +2 EV) are
printed per (S, L). A check on natural photos next to bench_small.py's validation set (mostly clip art
and renders).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SOURCES = ("skimage", "sklearn", "opencv-doc", "palapeli", "plasma-wallpapers", "lxqt-themes")


def main() -> None:
    import cv2
    import torch

    from bench_small import analyzer_at, levels_for, shrink
    from exposure_cli.data.simulator import render_ev

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=ROOT / "corpus" / "photos")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--levels", type=int, nargs="+", default=None,
                    help="network long sides to measure at every size (default: S, 2S, … below 512, and 512)")
    ap.add_argument("--evs", type=float, nargs="+", default=[-2.0, 0.0, 2.0])
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results_small_photos.json")
    ap.add_argument("--weights", default=None, help="weights file or folder (default: $EXPOSURE_WEIGHTS, shipped)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = sorted(p for p in args.photos.iterdir() if p.name.split("__")[0] in SOURCES)
    print(f"{len(paths)} photos", flush=True)
    photos = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "photos": len(photos),
           "evs": args.evs, "levels": args.levels, "loadavg": os.getloadavg(), "weights_sha256": None, "sizes": {}}
    from exposure_cli.weights import resolve_weights, verify_weights

    out["weights_sha256"] = verify_weights(resolve_weights(args.weights)).sha256
    analyzers = {}
    for size in args.sizes:
        frames, labels = [], []
        for photo in photos:
            small = np.clip(shrink(photo, size), 0, 1)
            for ev in args.evs:
                f, lab = render_ev(small, ev)
                frames.append(f)
                labels.append(lab)
        cell = {}
        for level in levels_for(size, args.levels):
            a = analyzers.setdefault(level, analyzer_at(level, args.weights))
            maes, means = [], []
            for i in range(0, len(frames), 8):
                for m, lab in zip(a.analyze_batch(frames[i:i + 8]), labels[i:i + 8]):
                    maes.append(float(np.abs(m - lab).mean()))
                    means.append(float(m.mean()))
            n_ev = len(args.evs)
            order = np.argsort(args.evs)
            sweeps = [np.asarray(means[k:k + n_ev])[order] for k in range(0, len(means), n_ev)]
            mono = float(np.mean([bool(np.all(np.diff(sw) < 0)) for sw in sweeps]))
            cell[str(level)] = {"mae": float(np.mean(maes)), "monotonic_share": mono, "per_frame": maes,
                                "means": means}
            print(f"  natural photos {size:4d} px, network at {level:4d}: MAE {np.mean(maes):.4f} "
                  f"monotonic {mono:.0%} ({len(maes)} frames)", flush=True)
        out["sizes"][str(size)] = cell
        out["loadavg_end"] = os.getloadavg()
        args.json.write_text(json.dumps(out) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
