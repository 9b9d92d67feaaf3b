"""Per-image bias of the photo sweeps by how bright the observed frame is (docs/MODEL.md "Stage 22").

For every photo sweep of a corpus split at a non-zero EV (HDR views left out), read by the ``eat`` analyzer
as a scan reads it: the image's mean predicted minus mean labelled residual, grouped by EV and by the
observed frame's mean grey. If the over side's bias comes from frames that look like plausible well-exposed
originals (an over-exposed photo of a dark scene looks like a normal photo of a brighter one), it is
largest where the observed mean grey is typical of originals and small where the frame is plainly bright.

    python tools/sweep_bias_by_level.py corpus/val [--weights W] [--hdr]

``--hdr``: the HDR views' sweeps instead of the photos'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEVELS = (0.0, 0.3, 0.45, 0.6, 0.75, 1.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--hdr", action="store_true", help="the HDR views' sweeps instead of the photos'")
    args = ap.parse_args()
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.color import grey
    from exposure_cli.data.iea40k import read_records
    from exposure_cli.evaluation import _ev, _is_hdr, analyzed_records

    records = [r for r in read_records(args.data, args.split) if r.extra.get("kind") == "sweep" and _is_hdr(r) == args.hdr]
    analyzer = create_analyzer("eat", weights=args.weights)  # None: the shipped weights
    rows = []  # (ev, observed mean grey, mean predicted, mean labelled)
    for record, image, pred, label in analyzed_records(analyzer, records):
        rows.append((_ev(record) or 0.0, float(grey(np.asarray(image, np.float32)).mean()),
                     float(pred.mean()), float(label.mean())))
    evs = sorted({ev for ev, *_ in rows})
    print(f"{len(rows)} {'HDR view' if args.hdr else 'photo'} sweep images of {args.data} ({args.split}); per cell: images, mean predicted − "
          "mean labelled residual\n")
    print("| EV | " + " | ".join(f"mean grey {a:.2f}–{min(b, 1):.2f}" for a, b in zip(LEVELS, LEVELS[1:])) + " | all |")
    print("|---|" + "---|" * len(LEVELS))
    for ev in evs:
        cells = []
        for a, b in zip(LEVELS, LEVELS[1:]):
            d = [p - l for e, g, p, l in rows if e == ev and a <= g < b]
            cells.append(f"{len(d)}: {np.mean(d):+.3f}" if d else "—")
        d = [p - l for e, g, p, l in rows if e == ev]
        print(f"| {ev:+g} | " + " | ".join(cells) + f" | {len(d)}: {np.mean(d):+.3f} |")


if __name__ == "__main__":
    main()
