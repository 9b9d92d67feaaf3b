"""What the simulator teaches about brightened photos, by observed tone (docs/MODEL.md "Stage 21").

Draws training samples from the corpus photos with the training simulator (``SimulatorConfig()``), keeps
those whose *global* shift lies in a window (default +1.5…+2.5 EV), and reports the mean label of their
pixels by observed grey level — for samples with a pure global shift and for samples where local parts
(gradients, vignettes, spots, regions, luma masks) were added on top — next to what the same global shift
alone labels. A network fed these learns, for a pixel of a given brightness in a frame that looks
brightened, the average over all of them.

    python tools/train_labels_by_tone.py corpus/photos --draws 6 --ev 1.5 2.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TONES = (("below 0.1", 0.0, 0.1), ("0.1–0.5", 0.1, 0.5), ("0.5–0.8", 0.5, 0.8), ("0.8–0.98", 0.8, 0.98),
         ("clipped ≥ 0.98", 0.98, 1.01))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path)
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--ev", type=float, nargs=2, default=(1.5, 2.5))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import cv2

    from exposure_cli.color import grey
    from exposure_cli.data.simulator import SimulatorConfig, simulate_photo

    config = SimulatorConfig()
    rng = np.random.default_rng(args.seed)
    files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    sums: dict[tuple[str, str], list[float]] = {}
    kept = {"global only": 0, "global + local parts": 0}
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        image = np.ascontiguousarray(bgr[..., ::-1]).astype(np.float32) / 255.0
        for _ in range(args.draws):
            sample = simulate_photo(image, rng, config)
            g_ev = sample.params.get("global_ev", 0.0)
            if sample.params.get("original") or not args.ev[0] <= g_ev <= args.ev[1]:
                continue
            group = "global only" if not sample.params.get("local") else "global + local parts"
            kept[group] += 1
            g = grey(sample.observed)
            for name, lo, hi in TONES:
                m = (g >= lo) & (g < hi)
                if m.any():
                    cell = sums.setdefault((group, name), [0, 0.0])
                    cell[0] += int(m.sum())
                    cell[1] += float(sample.residual[m].sum())
    print(f"{len(files)} photos × {args.draws} draws; global shift {args.ev[0]:+g}…{args.ev[1]:+g} EV: "
          + ", ".join(f"{k} {v}" for k, v in kept.items()) + "\n")
    print("| observed grey | global only: mean label (pixels) | global + local parts: mean label (pixels) |")
    print("|---|---|---|")
    for name, _, _ in TONES:
        cells = [sums.get((group, name)) for group in kept]
        print(f"| {name} | " + " | ".join(f"{c[1] / c[0]:+.3f} ({c[0]})" if c else "—" for c in cells) + " |")


if __name__ == "__main__":
    main()
