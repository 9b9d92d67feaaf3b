"""How much of a bracket stack's fused-ideal level is the photographer's bracketing? (docs/MODEL.md)

Reads the per-scene results of ``tools/label_conventions.py`` (``--json``) for the train and val splits and
relates each stack's fused-ideal mean grey to its EV span (darkest to brightest frame) and to the scene's
dynamic range, and the HDR labeller's level to the same. Nothing is trained; the lockbox is not read.

    python tools/bracket_level_span.py benchmarks/results_label_conventions_train.json \
        benchmarks/results_label_conventions_val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SPANS = ((0.0, 6.0), (6.0, 9.5), (9.5, 99.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, nargs="+", help="label_conventions.py --json outputs")
    args = ap.parse_args()
    print("| split | stacks | corr(fused level, EV span) | corr(fused level, dynamic range) | EV span | stacks | "
          "fused level | HDR labeller level | difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in args.results:
        data = json.loads(path.read_text())
        rows = data["scenes"]
        fused = np.array([r["fused_mean_grey"] for r in rows])
        hdr = np.array([r["hdr_mean_grey"] for r in rows])
        span = np.array([r["ev_span"] for r in rows])
        dr = np.array([r["dynamic_range_stops"] for r in rows])
        head = (f"| {data['split']} | {len(rows)} | {np.corrcoef(fused, span)[0, 1]:+.2f} | "
                f"{np.corrcoef(fused, dr)[0, 1]:+.2f} |")
        for lo, hi in SPANS:
            sel = (span >= lo) & (span < hi)
            if not sel.any():
                continue
            print(f"{head} {lo:g}–{hi:g} stops | {sel.sum()} | {fused[sel].mean():.3f} | {hdr[sel].mean():.3f} | "
                  f"{(hdr[sel] - fused[sel]).mean():+.3f} |")
            head = "| | | | |"


if __name__ == "__main__":
    main()
