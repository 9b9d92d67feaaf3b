"""Fit a weights folder's residual calibration (:mod:`exposure_cli.residual_calibration`) on training data.

    python -m exposure_cli.training.fit_residual_calibration --weights weights --out OUT \\
        [--corpus corpus] [--brackets corpus/brackets_n] [--seed 54321] [--pseudo-count 0.5]
        [--bias-weight L [--smoothness M] [--grey-monotone] | --choose [--grey-monotone]]

The network (its card's working size, no calibration) reads the *train* photos and train HDR crops of the
corpus rendered by exactly the validation set's recipe (:func:`exposure_cli.data.valset.render_items` with
another seed) and, with ``--brackets``, every frame of the train bracket stacks with their labels; the
labels are area-resized to the working size. ``OUT`` gets the weights file and the card with the fitted
``residual_calibration`` (``OUT`` may be the weights folder itself). Nothing of val or the lockbox is read.

Without ``--bias-weight`` the table is the conditional mean (:meth:`CalibrationFit.fit`). With it, the
table is fitted to keep every *cell* of renders unbiased (:meth:`CalibrationFit.fit_unbiased`; cells: the
photos at each EV of the sweeps with their originals as 0 EV, the HDR crops at each EV and their
originals; bracket frames and simulator draws count in the pixel loss only). ``--choose`` picks
(bias weight, smoothness) on train alone: the train units (photo, crop, stack) are split into two folds by
a hash of their id, every pair of :data:`CHOICE_GRID` is fitted on one fold and measured on the other,
both ways, and the pair with the lowest held-out pixel MSE among those whose largest held-out |bias| over
the sweep cells is ≤ ``--bias-bound`` wins (docs/MODEL.md, stages 27 and 28); none: nothing is written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import zlib
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from ..color import grey
from ..residual_calibration import CalibrationFit, ResidualCalibration

#: Seed of the train renders (the validation set's is ``valset.VAL_SEED``).
TRAIN_RENDER_SEED = 54321

#: (bias weight, smoothness) pairs ``--choose`` tries (stages 27 and 28 of docs/MODEL.md).
CHOICE_GRID = tuple((bias, smooth) for smooth in (0.01, 0.1, 1.0) for bias in (1.0, 3.0, 10.0))


class TrainPair(NamedTuple):
    """One training image: its group (``photo``, ``hdr``, ``bracket``), its bias cell (None: pixel loss
    only), the unit it belongs to (photo, crop or stack id: folds never split one), image and label."""

    group: str
    cell: str | None
    unit: str
    image: np.ndarray
    label: np.ndarray


def cell_of(group: str, kind: str, ev: float | str) -> str | None:
    """The bias cell of a validation-recipe render: ``photo +2 EV``, ``hdr original``, … (draws: None)."""
    if kind == "original":
        return f"{group} original"
    if kind == "sweep":
        return f"{group} {float(ev):+g} EV"
    return None


def fold_of(unit: str) -> int:
    """0 or 1, from a hash of the unit's id (stable across runs and machines)."""
    return zlib.crc32(unit.encode()) % 2


def train_pairs(corpus: Path, brackets: Path | None, seed: int = TRAIN_RENDER_SEED) -> Iterator[TrainPair]:
    """Every train render (validation recipe, `seed`) and, with `brackets`, every train frame."""
    from ..data.valset import render_items

    for item in render_items(corpus, "train", seed=seed):
        yield TrainPair(item.group, cell_of(item.group, item.kind, item.ev), item.photo, item.image, item.residual)
    if brackets is not None:
        from ..data.brackets import load_stacks

        for stack in load_stacks(brackets, "train"):
            for k in range(len(stack.frames)):
                yield TrainPair("bracket", None, stack.id, stack.frame(k).astype(np.float32) / 255.0, stack.label(k))


def accumulate(analyzer, pairs: Iterable[TrainPair], batch: int = 8, log=print
               ) -> tuple[tuple[CalibrationFit, CalibrationFit], dict[str, int]]:
    """Run `analyzer` (its raw maps) over `pairs` and add every map to the fit of its unit's fold; returns
    the two folds' fits (:meth:`CalibrationFit.merge` them for all) and counts per group."""
    import cv2

    folds, counts, pending = (CalibrationFit(), CalibrationFit()), {}, []
    started = time.monotonic()

    def flush() -> None:
        maps = analyzer.working_maps([pair.image for pair in pending])
        for pair, (small, low_map) in zip(pending, maps):
            label = pair.label
            if label.shape != low_map.shape:
                label = cv2.resize(label.astype(np.float32), (low_map.shape[1], low_map.shape[0]),
                                   interpolation=cv2.INTER_AREA)
            folds[fold_of(pair.unit)].add(low_map, grey(small), label, cell=pair.cell)
            counts[pair.group] = counts.get(pair.group, 0) + 1
        pending.clear()
        done = folds[0].images + folds[1].images
        if done % 400 < batch:
            log(f"{done} images, {time.monotonic() - started:.0f} s")

    for pair in pairs:
        pending.append(pair)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return folds, counts


def is_sweep_cell(cell: str) -> bool:
    return cell.endswith(" EV")


def choose(folds: tuple[CalibrationFit, CalibrationFit], grey_monotone: bool, bias_bound: float = 0.025,
           grid: Iterable[tuple[float, float]] | None = None, log=print) -> tuple[float, float] | None:
    """The (bias weight, smoothness) of `grid` (default :data:`CHOICE_GRID`) with the lowest held-out MSE
    among those whose largest held-out |bias| over the sweep cells is ≤ `bias_bound`, fitted on one fold
    and measured on the other, both ways; None when none is."""
    if not (folds[0].images and folds[1].images):
        raise ValueError(f"a two-fold choice needs images in both folds (got {folds[0].images} and {folds[1].images})")

    def largest_bias(held) -> float:
        return max((abs(b) for c, b in held.cell_bias.items() if is_sweep_cell(c)), default=0.0)

    reference = [folds[k].held_out(None) for k in (0, 1)]
    log(f"no table: held-out MSE {np.mean([h.mse for h in reference]):.5f}, largest |bias| "
        f"{max(largest_bias(h) for h in reference):.3f}")
    admissible = []
    for bias_weight, smoothness in (CHOICE_GRID if grid is None else grid):
        held = [folds[k].held_out(folds[1 - k].fit_unbiased(bias_weight, smoothness, grey_monotone)) for k in (0, 1)]
        mse, worst = float(np.mean([h.mse for h in held])), max(largest_bias(h) for h in held)
        log(f"bias weight {bias_weight:g}, smoothness {smoothness:g}: held-out MSE {mse:.5f}, largest |bias| {worst:.3f}")
        if worst <= bias_bound:
            admissible.append((mse, bias_weight, smoothness))
    if not admissible:
        return None
    _, bias_weight, smoothness = min(admissible)
    return bias_weight, smoothness


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
    parser.add_argument("--bias-weight", type=float, default=None,
                        help="fit for unbiased cells (fit_unbiased) with this weight on their squared bias")
    parser.add_argument("--smoothness", type=float, default=0.0, help="with --bias-weight: weight of smoothness")
    parser.add_argument("--grey-monotone", action="store_true",
                        help="with --bias-weight or --choose: the table may only fall along grey")
    parser.add_argument("--choose", action="store_true",
                        help="choose bias weight and smoothness by a two-fold cross-fit on train")
    parser.add_argument("--bias-bound", type=float, default=0.025, help="with --choose: largest held-out |bias|")
    args = parser.parse_args(argv)
    if args.choose and args.bias_weight is not None:
        parser.error("--choose picks the bias weight itself; give one or the other")
    if args.bias_weight is None and (args.smoothness or (args.grey_monotone and not args.choose)):
        parser.error("--smoothness needs --bias-weight, --grey-monotone needs --bias-weight or --choose")

    from ..analyzers.eat import EATAnalyzer

    analyzer = EATAnalyzer(device="cpu", weights=args.weights, residual_calibration=False,
                           thumbnail_weights=None)
    brackets = Path(args.brackets) if args.brackets else None
    folds, counts = accumulate(analyzer, train_pairs(Path(args.corpus), brackets, args.seed), args.batch)
    fit = folds[0].merge(folds[1])
    sources = "train renders (valset recipe, seed %d)" % args.seed + (f" + train frames of {brackets}" if brackets else "")
    extra: dict = {"images": counts, "working_long_side": analyzer.working_long_side}
    bias_weight, smoothness = args.bias_weight, args.smoothness
    if args.choose:
        try:
            chosen = choose(folds, args.grey_monotone, args.bias_bound)
        except ValueError as error:
            print(f"cannot choose: {error}")
            return 2
        if chosen is None:
            print(f"no bias weight and smoothness keeps every held-out sweep cell within {args.bias_bound}: nothing written")
            return 1
        bias_weight, smoothness = chosen
        print(f"chosen: bias weight {bias_weight:g}, smoothness {smoothness:g}")
        extra["chosen_by"] = f"two-fold cross-fit on train, largest held-out |bias| <= {args.bias_bound}"
    if bias_weight is None:
        calibration = fit.fit(args.pseudo_count, sources)
        extra["pseudo_count"] = args.pseudo_count
    else:
        calibration = fit.fit_unbiased(bias_weight, smoothness, args.grey_monotone,
                                       fitted_on=sources + f", unbiased per cell (bias weight {bias_weight:g}, "
                                       f"smoothness {smoothness:g}{', falling along grey' if args.grey_monotone else ''})")
        extra.update(bias_weight=bias_weight, smoothness=smoothness, grey_monotone=args.grey_monotone,
                     train_cell_bias={c: round(b, 4) for c, b in fit.held_out(calibration).cell_bias.items()})
    table = calibration.table
    path = write_weights(Path(args.weights), Path(args.out), calibration, extra)
    print(f"fitted on {fit.images} images {counts}; |T| mean {np.abs(table).mean():.4f}, "
          f"max {np.abs(table).max():.4f} → {path.parent / 'card.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
