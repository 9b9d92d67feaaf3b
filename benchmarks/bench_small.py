"""Small images: does analysing a thumbnail at its own size hurt the maps, compared with upscaling it?

Usage:
    python benchmarks/bench_small.py                                   # corpus/val, every 4th photo
    python benchmarks/bench_small.py --every 1 --sizes 64 128 --json /tmp/small.json
    python benchmarks/bench_small.py --brackets corpus/brackets     # also the real bracket val stacks
    python benchmarks/bench_small.py --sizes 64 128 --levels 320 384 512   # only these network sizes

For every size S (long side, px) the validation photos *and their labels* are shrunk to S (area
interpolation), and the ``eat`` analyzer (the weights it would use: --weights, $EXPOSURE_WEIGHTS, shipped)
analyses them with the network seeing a long side of L, for every L in S, 2S, 4S, … up to 512 and 512
itself: L = S is "native size" (the new policy), L = 512 is "upscale to 512" (the old one), the levels
in between are what a floor "never below L px" would do. ``--levels L …`` measures exactly those network
long sides at every size instead (those not below the size; e.g. thumbnail copies between 256 and 512). Maps are compared with the shrunk labels at S
using ``exposure eval``'s metrics (:func:`exposure_cli.evaluation.evaluate_analyzer`) and, with
--brackets, the real-bracket metrics (:mod:`exposure_cli.stack_evaluation`). The validation photos are
384 px on their long side, so the largest "photo" size is 384 (at ≥ 512 both policies are the same: the
photo is shrunk to 512).

Prints one table per data set and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKING = 512


def shrink(arr: np.ndarray, long_side: int) -> np.ndarray:
    """`arr` (H×W or H×W×C float32) with its long side at `long_side` (area); unchanged when not larger."""
    import cv2

    from exposure_cli.imageops import working_size

    if max(arr.shape[:2]) <= long_side:
        return arr
    h, w = working_size(arr.shape[0], arr.shape[1], long_side)
    return cv2.resize(np.ascontiguousarray(arr, np.float32), (w, h), interpolation=cv2.INTER_AREA)


@dataclass
class ShrunkRecord:
    """An IEA40K record whose image and label are shrunk to `size` (duck-types IEA40KRecord for eval)."""

    base: object
    size: int
    img_id: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.img_id = self.base.img_id
        self.extra = self.base.extra

    def load_image(self) -> np.ndarray:
        return np.clip(shrink(self.base.load_image(), self.size), 0.0, 1.0)

    def load_residual(self) -> np.ndarray:
        return np.clip(shrink(self.base.load_residual(), self.size), -1.0, 1.0)


def levels(size: int) -> list[int]:
    """Network long sides to try for photos of long side `size`: size, 2·size, … below 512, and 512."""
    out, level = [], size
    while level < WORKING:
        out.append(level)
        level *= 2
    return out + [WORKING]


def levels_for(size: int, only: list[int] | None = None) -> list[int]:
    """:func:`levels` of `size`, or — with `only` — those of `only` not below `size`, ascending."""
    if not only:
        return levels(size)
    return sorted({int(lv) for lv in only if int(lv) >= size})


def analyzer_at(level: int, weights: str | None):
    """The eat analyzer with every photo (≤ level) seen at long side `level`: native when level = size."""
    from exposure_cli.analyzers import create_analyzer

    return create_analyzer("eat", weights=weights, device="cpu", working_long_side=level,
                           native_min_long_side=10**6, batch_size=8)


def photo_records(data: Path, every: int) -> list:
    """The val records of every `every`-th photo (whole EV sweeps kept together) plus every `every`-th
    other record (simulated, HDR crops)."""
    from exposure_cli.data.iea40k import read_records

    records = read_records(data, "val")
    photos = sorted({r.extra.get("photo", "") for r in records if r.extra.get("photo")})
    keep = set(photos[::every])
    out, others = [], 0
    for r in records:
        if r.extra.get("photo"):
            if r.extra["photo"] in keep:
                out.append(r)
        else:
            others += 1
            if others % every == 1 or every == 1:
                out.append(r)
    return out


def eval_photos(data: Path, sizes: list[int], every: int, weights: str | None,
                only: list[int] | None = None) -> dict:
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.evaluation import evaluate_analyzer

    records = photo_records(data, every)
    print(f"photos: {len(records)} records of {data}", flush=True)
    out: dict = {"records": len(records), "sizes": {}}
    wanted = sorted({lv for s in sizes for lv in levels_for(s, only)})
    analyzers = {lv: analyzer_at(lv, weights) for lv in wanted}
    baseline = create_analyzer("baseline")
    for size in sizes:
        shrunk = [ShrunkRecord(r, size) for r in records]
        cell: dict = {"zero_map_mae": float(np.mean([np.abs(r.load_residual()).mean() for r in shrunk]))}
        for level in levels_for(size, only):
            t = time.perf_counter()
            res = evaluate_analyzer(analyzers[level], shrunk, f"eat@{level}").to_dict()
            res.pop("per_image", None)
            cell[str(level)] = res
            print(f"  photos {size:4d} px, network at {level:4d}: MAE {res['mae']:.4f} SSIM {res['ssim']:.3f} "
                  f"mono {res['sweep_monotonic_share'] or 0:.0%} AUCu {res['auc_under'] or 0:.3f} "
                  f"AUCo {res['auc_over'] or 0:.3f} |r|orig {res['originals_mean_abs'] or 0:.4f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        res = evaluate_analyzer(baseline, shrunk, "baseline").to_dict()
        res.pop("per_image", None)
        cell["baseline"] = res
        out["sizes"][str(size)] = cell
    return out


def eval_brackets(root: Path, sizes: list[int], weights: str | None, only: list[int] | None = None,
                  split: str = "val") -> dict:
    from exposure_cli.data.brackets import load_stacks
    from exposure_cli.stack_evaluation import SceneResult, load_frame, frame_result, load_label, summarise

    stacks = load_stacks(root, split)
    print(f"brackets: {len(stacks)} {split} stacks of {root}", flush=True)
    out: dict = {"scenes": len(stacks), "split": split, "sizes": {}}
    wanted = sorted({lv for s in sizes for lv in levels_for(s, only)})
    analyzers = {lv: analyzer_at(lv, weights) for lv in wanted}
    scenes: dict[tuple[int, int], list] = {(s, lv): [] for s in sizes for lv in levels_for(s, only)}
    for k, stack in enumerate(stacks):  # one stack in memory at a time (frames are 1024 px)
        frames = [load_frame(f) for f in stack.frames]
        labels = [load_label(lab) for lab in stack.labels]
        for size in sizes:
            imgs = [np.clip(shrink(i, size), 0, 1) for i in frames]
            labs = [shrink(lab, size) for lab in labels]
            for level in levels_for(size, only):
                analyzer = analyzers[level]
                preds = analyzer.analyze_batch(imgs)
                res = SceneResult(stack.id, getattr(stack, "category", ""), int(stack.best))
                for img, pred, lab, rel in zip(imgs, preds, labs, stack.relative_ev_to_best):
                    res.frames.append(frame_result(img, np.asarray(pred, np.float32), lab, rel,
                                                   analyzer.ev_calibration))
                scenes[(size, level)].append(res)
        print(f"  stack {k + 1}/{len(stacks)} {stack.id}", flush=True)
    for size in sizes:
        cell: dict = {}
        for level in levels_for(size, only):
            summary = summarise(scenes[(size, level)])
            cell[str(level)] = summary
            print(f"  brackets {size:4d} px, network at {level:4d}: ordered {summary['ordered']}/{len(stacks)} "
                  f"reversals {summary['reversals']} best {summary['best_pick']} "
                  f"EV err {summary['ev_correction_error']:.2f} MAE {summary['mae']:.4f}", flush=True)
        out["sizes"][str(size)] = cell
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "corpus" / "val")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 384])
    ap.add_argument("--levels", type=int, nargs="+", default=None,
                    help="network long sides to measure at every size (default: S, 2S, … below 512, and 512)")
    ap.add_argument("--every", type=int, default=4, help="evaluate every N-th photo (with its whole sweep)")
    ap.add_argument("--brackets", type=Path, default=None, help="bracket corpus (val split) to evaluate too")
    ap.add_argument("--bracket-split", default="val", choices=["val", "lockbox"],
                    help="which stacks of --brackets (the lockbox only when a selection rule says so, once)")
    ap.add_argument("--no-photos", action="store_true")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results_small.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_start": os.getloadavg(),
                 "every": args.every, "sizes": args.sizes, "levels": args.levels}
    from exposure_cli.weights import resolve_weights, verify_weights

    out["weights_sha256"] = verify_weights(resolve_weights(args.weights)).sha256
    if not args.no_photos:
        out["photos"] = eval_photos(args.data, args.sizes, args.every, args.weights, args.levels)
    if args.brackets:
        out["brackets"] = eval_brackets(args.brackets, args.sizes, args.weights, args.levels, args.bracket_split)
    out["loadavg_end"] = os.getloadavg()
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
