"""How the EAT model reads black pixels of frames far under the best frame, against their labels.

    python tools/dark_pixels.py --brackets corpus/brackets --split train [--weights W] [--every 3]

For every ``--every``-th stack of the split: frames at least 3 stops under the best frame, pixels darker
than grey 0.05; prints the mean and median label and prediction overall and per depth. Use train stacks
for diagnosis (val and lockbox are for selection and the final score).
"""

from __future__ import annotations

import argparse

import numpy as np

from exposure_cli.analyzers.eat import EATAnalyzer
from exposure_cli.color import grey
from exposure_cli.data.brackets import load_stacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brackets", default="corpus/brackets")
    parser.add_argument("--split", default="train")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--black", type=float, default=0.05)
    args = parser.parse_args()
    analyzer = EATAnalyzer(weights=args.weights) if args.weights else EATAnalyzer()
    rows = []
    for stack in load_stacks(args.brackets, args.split)[:: args.every]:
        for k, ev in enumerate(stack.relative_ev_to_best):
            if ev > -3:
                continue
            image = stack.frame(k).astype(np.float32) / 255.0
            black = grey(image) < args.black
            if black.sum() < 100:
                continue
            pred = analyzer.analyze_batch([image])[0]
            rows.append((ev, stack.label(k)[black], pred[black]))
    if not rows:
        raise SystemExit("no dark frames with black pixels in this split")

    def line(name: str, chosen: list) -> str:
        label = np.concatenate([r[1] for r in chosen])
        pred = np.concatenate([r[2] for r in chosen])
        return (f"{name:>14}: {len(chosen):3d} frames, label mean {label.mean():+.3f} median {np.median(label):+.3f}"
                f" | predicted mean {pred.mean():+.3f} median {np.median(pred):+.3f}")

    print(line("all ≥3 stops", rows))
    for low, high in [(-99, -6), (-6, -4), (-4, -3)]:
        chosen = [r for r in rows if low < r[0] <= high]
        if chosen:
            print(line(f"{-high}–{-low if low > -99 else '…'} stops", chosen))


if __name__ == "__main__":
    main()
