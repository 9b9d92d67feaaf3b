"""Per-EV bias of the photo sweeps split by each pixel's observed grey level (docs/MODEL.md "Stage 21").

``exposure eval`` reports the mean predicted vs labelled residual per EV; this says *which pixels* carry
the difference: clipped (grey ≥ 0.98), bright (0.8–0.98), below 0.8, and dark (< 0.1), on the photo sweeps
of a corpus split (HDR views left out), read by the ``eat`` analyzer as a scan reads them.

    python tools/sweep_bias_by_tone.py corpus/val [--weights W]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.color import grey
    from exposure_cli.data.iea40k import read_records
    from exposure_cli.evaluation import _ev, _fit_to, _is_hdr, analyzed_records

    records = [r for r in read_records(args.data, args.split)
               if r.extra.get("kind") == "sweep" and not _is_hdr(r) and (_ev(r) or 0) != 0]
    analyzer = create_analyzer("eat", weights=args.weights)  # None: the shipped weights
    tones = (("all", lambda g: np.ones_like(g, bool)), ("clipped, grey ≥ 0.98", lambda g: g >= 0.98),
             ("bright, 0.8–0.98", lambda g: (g >= 0.8) & (g < 0.98)), ("below 0.8", lambda g: g < 0.8),
             ("dark, < 0.1", lambda g: g < 0.1))
    cells: dict[tuple[float, str], list[float]] = {}
    for record, image, pred, label in analyzed_records(analyzer, records):
        g = _fit_to(grey(np.asarray(image, np.float32)), label.shape)
        for name, select in tones:
            m = select(g)
            if m.any():
                cell = cells.setdefault((_ev(record), name), [0, 0.0, 0.0])
                cell[0] += int(m.sum())
                cell[1] += float(pred[m].sum())
                cell[2] += float(label[m].sum())
    totals = {ev: n for (ev, name), (n, _, _) in cells.items() if name == "all"}
    print(f"{len(records)} photo sweep images of {args.data} ({args.split}), weights {args.weights or 'shipped'}\n")
    print("| EV | pixels | share of the frame | mean predicted | mean labelled | predicted − labelled |")
    print("|---|---|---|---|---|---|")
    for (ev, name), (n, p, lab) in sorted(cells.items(), key=lambda kv: (kv[0][0], [t[0] for t in tones].index(kv[0][1]))):
        print(f"| {ev:+.0f} {name} | {n} | {n / totals[ev]:.2f} | {p / n:+.3f} | {lab / n:+.3f} | {(p - lab) / n:+.3f} |")


if __name__ == "__main__":
    main()
