"""Real bracket stacks shrunk to small sizes, read by the analyzer *as shipped*: the weights card's thumbnail
bands, its thumbnail weights and its stops-of-correction head (``bench_small.py`` measures one weights file
at forced copy sizes with that file's own card instead).

    python benchmarks/bench_small_product.py --brackets corpus/brackets_n --split val --sizes 64 96
    python benchmarks/bench_small_product.py --split lockbox --sizes 64 --json out.json   # once, after a choice
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_small import shrink  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brackets", type=Path, default=ROOT / "corpus" / "brackets_n")
    ap.add_argument("--split", default="val", choices=["val", "lockbox"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64])
    ap.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.data.brackets import load_stacks
    from exposure_cli.stack_evaluation import SceneResult, frame_result, load_frame, load_label, summarise

    analyzer = create_analyzer("eat", weights=args.weights, device="cpu")
    stacks = load_stacks(args.brackets, args.split)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "split": args.split,
           "scenes": len(stacks), "analyzer": analyzer.info.extra, "sizes": {}}
    scenes: dict[int, list] = {s: [] for s in args.sizes}
    for stack in stacks:
        frames = [load_frame(f) for f in stack.frames]
        labels = [load_label(lab) for lab in stack.labels]
        for size in args.sizes:
            imgs = [np.clip(shrink(f, size), 0, 1) for f in frames]
            labs = [shrink(lab, size) for lab in labels]
            res = SceneResult(stack.id, getattr(stack, "category", ""), int(stack.best))
            for img, pred, lab, rel in zip(imgs, analyzer.analyze_batch(imgs), labs, stack.relative_ev_to_best):
                res.frames.append(frame_result(img, np.asarray(pred, np.float32), lab, rel, analyzer.ev_calibration))
            scenes[size].append(res)
    for size in args.sizes:
        s = summarise(scenes[size])
        out["sizes"][str(size)] = s
        print(f"{args.split} {len(stacks)} stacks, {size} px, as shipped: ordered {s['ordered']} reversals "
              f"{s['reversals']} best {s['best_pick']} EV err {s['ev_correction_error']:.2f} MAE {s['mae']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
