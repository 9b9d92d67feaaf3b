"""The stops-of-correction error the *labels* themselves give (docs/MODEL.md, stage 14).

    python tools/ev_label_floor.py --brackets corpus/brackets --split train val

For every frame within ±3 EV of its stack's best frame, ``ev_correction`` is read from the frame and its
true label map (the stack's exposure-fusion ideal) and compared with the frame's offset from the best frame,
as ``exposure eval`` does for a model's map. Reported apart for stacks whose exposures are *known* (EXIF,
file names, ``list.txt``) and those whose offsets were estimated from the frames. A model that reproduced
the labels exactly would score this; it bounds what any map-based head can reach against the best frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from exposure_cli.color import grey
from exposure_cli.correction import ev_correction
from exposure_cli.data.brackets import load_stacks
from exposure_cli.stack_evaluation import EV_WINDOW, KNOWN_EV_SOURCES, load_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brackets", type=Path, default=Path("corpus/brackets"))
    parser.add_argument("--split", nargs="+", default=["train", "val"])
    parser.add_argument("--per-stack", action="store_true", help="also list each known-exposure stack")
    args = parser.parse_args()
    for split in args.split:
        errors: dict[bool, list[float]] = {True: [], False: []}
        for stack in load_stacks(args.brackets, split):
            known = getattr(stack, "ev_source", "") in KNOWN_EV_SOURCES
            stack_errors = []
            for k, rel in enumerate(stack.relative_ev_to_best):
                if abs(rel) > EV_WINDOW:
                    continue
                image = stack.frame(k).astype(np.float32) / 255.0
                label = load_label(stack.labels[k])
                if label.shape != image.shape[:2]:
                    label = cv2.resize(label, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_AREA)
                stack_errors.append(abs(ev_correction(grey(image), label) + rel))
            errors[known].extend(stack_errors)
            if known and args.per_stack and stack_errors:
                print(f"  {split} {stack.id} ({getattr(stack, 'category', '')}): {np.mean(stack_errors):.2f} "
                      f"over {len(stack_errors)} frames")
        for known, name in ((True, "known exposures"), (False, "estimated offsets")):
            values = errors[known]
            if values:
                print(f"{split}: {name}: mean |ev_correction(label) + relative EV| = {np.mean(values):.3f} "
                      f"over {len(values)} frames")


if __name__ == "__main__":
    main()
