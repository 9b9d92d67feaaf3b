"""How the EAT model reads black pixels of frames far under the best frame, against their labels.

    python tools/dark_pixels.py --brackets corpus/brackets --split train [--weights W] [--every 3]
    python tools/dark_pixels.py --simulated corpus/photos [--every 3]     # the simulator's labels instead

For every ``--every``-th stack of the split: frames at least 3 stops under the best frame, pixels darker
than grey 0.05; prints the mean and median label and prediction overall and per depth. Use train stacks
for diagnosis (val and lockbox are for selection and the final score). ``--simulated PHOTOS`` prints what
the simulator labels the same pixels instead (every ``--every``-th photo at ≤ 384 px, six draws each with
no originals, the draws with a global shift ≥ 3 stops under kept; no model is run).
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
    parser.add_argument("--simulated", default=None, metavar="PHOTOS", help="folder of well-exposed photos")
    args = parser.parse_args()
    if args.simulated:
        simulated_labels(args.simulated, args.every, args.black)
        return
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


def simulated_labels(folder: str, every: int, black_level: float) -> None:
    import dataclasses
    from pathlib import Path

    import cv2

    from exposure_cli.data.simulator import SimulatorConfig, simulate_photo

    config = dataclasses.replace(SimulatorConfig(global_ev=(-8.0, 4.0)), p_original=0.0)
    rng = np.random.default_rng(0)
    depth: dict[tuple[float, float], list[np.ndarray]] = {(-99, -6): [], (-6, -4): [], (-4, -3): []}
    for path in sorted(Path(folder).iterdir())[::every]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        scale = 384 / max(photo.shape[:2])
        if scale < 1:
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for _ in range(6):
            sample = simulate_photo(photo, rng, config)
            ev = float(sample.params.get("global_ev", 0.0))
            black = grey(sample.observed) < black_level
            if ev > -3 or black.sum() < 50:
                continue
            for (low, high), kept in depth.items():
                if low < ev <= high:
                    kept.append(sample.residual[black])
    for (low, high), kept in depth.items():
        if kept:
            labels = np.concatenate(kept)
            name = f"{-high}–{-low if low > -99 else '…'} stops"
            print(f"{name:>14}: {len(kept):3d} draws, simulated label mean {labels.mean():+.3f} median {np.median(labels):+.3f}")


if __name__ == "__main__":
    main()
