"""Fit a weights folder's residual calibration (:mod:`exposure_cli.residual_calibration`) on training data.

    python -m exposure_cli.training.fit_residual_calibration --weights weights --out OUT \\
        [--corpus corpus] [--brackets corpus/brackets_n] [--seed 54321] [--pseudo-count 0.5]

The network (its card's working size, no calibration) reads the *train* photos and train HDR crops of the
corpus rendered by exactly the validation set's recipe (:func:`exposure_cli.data.valset.render_items` with
another seed) and, with ``--brackets``, every frame of the train bracket stacks with their labels; the
labels are area-resized to the working size. ``OUT`` gets the weights file and the card with the fitted
``residual_calibration`` (``OUT`` may be the weights folder itself). Nothing of val or the lockbox is read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..color import grey
from ..residual_calibration import CalibrationFit, ResidualCalibration

#: Seed of the train renders (the validation set's is ``valset.VAL_SEED``).
TRAIN_RENDER_SEED = 54321


def train_pairs(corpus: Path, brackets: Path | None, seed: int = TRAIN_RENDER_SEED
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(group, RGB image in [0, 1], label)`` for every train render and, with `brackets`, train frame."""
    from ..data.valset import render_items

    for item in render_items(corpus, "train", seed=seed):
        yield item.group, item.image, item.residual
    if brackets is not None:
        from ..data.brackets import load_stacks

        for stack in load_stacks(brackets, "train"):
            for k in range(len(stack.frames)):
                yield "bracket", stack.frame(k).astype(np.float32) / 255.0, stack.label(k)


def accumulate(analyzer, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], batch: int = 8,
               log=print) -> tuple[CalibrationFit, dict[str, int]]:
    """Run `analyzer` (its raw maps) over `pairs` and add every map to a fit; returns it and counts per group."""
    import cv2

    fit, counts, pending = CalibrationFit(), {}, []
    started = time.monotonic()

    def flush() -> None:
        maps = analyzer.working_maps([image for _, image, _ in pending])
        for (group, _, label), (small, low_map) in zip(pending, maps):
            if label.shape != low_map.shape:
                label = cv2.resize(label.astype(np.float32), (low_map.shape[1], low_map.shape[0]),
                                   interpolation=cv2.INTER_AREA)
            fit.add(low_map, grey(small), label)
            counts[group] = counts.get(group, 0) + 1
        pending.clear()
        if fit.images % 400 < batch:
            log(f"{fit.images} images, {time.monotonic() - started:.0f} s")

    for pair in pairs:
        pending.append(pair)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return fit, counts


def write_weights(source: Path, out: Path, calibration: ResidualCalibration, extra: dict) -> Path:
    """``out``: the weights of `source` with `calibration` (and `extra` facts about its fit) in the card.
    A copy to another folder takes the thumbnail weights the card names along (same relative path), so
    the folder loads as it is."""
    from ..weights import resolve_weights, weights_in

    model = resolve_weights(source)
    folder = model.parent
    out.mkdir(parents=True, exist_ok=True)
    card = json.loads((folder / "card.json").read_text())
    if out.resolve() != folder.resolve():
        shutil.copy2(model, out / model.name)
        thumbnails = (card.get("thumbnail_weights") or {}).get("path")
        if thumbnails:
            src, dst = folder / thumbnails, out / thumbnails
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    card["residual_calibration"] = {**calibration.to_card(), **extra}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return weights_in(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="weights file or folder (its card's working size)")
    parser.add_argument("--out", required=True, help="folder for the weights with the fitted calibration")
    parser.add_argument("--corpus", default="corpus")
    parser.add_argument("--brackets", default=None, help="bracket stacks whose train frames join the fit")
    parser.add_argument("--seed", type=int, default=TRAIN_RENDER_SEED)
    parser.add_argument("--pseudo-count", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)

    from ..analyzers.eat import EATAnalyzer

    analyzer = EATAnalyzer(device="cpu", weights=args.weights, residual_calibration=False,
                           thumbnail_weights=None)
    brackets = Path(args.brackets) if args.brackets else None
    fit, counts = accumulate(analyzer, train_pairs(Path(args.corpus), brackets, args.seed), args.batch)
    sources = "train renders (valset recipe, seed %d)" % args.seed + (f" + train frames of {brackets}" if brackets else "")
    calibration = fit.fit(args.pseudo_count, sources)
    table = calibration.table
    extra = {"images": counts, "pseudo_count": args.pseudo_count,
             "working_long_side": analyzer.working_long_side}
    path = write_weights(Path(args.weights), Path(args.out), calibration, extra)
    print(f"fitted on {fit.images} images {counts}; |T| mean {np.abs(table).mean():.4f}, "
          f"max {np.abs(table).max():.4f} → {path.parent / 'card.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
