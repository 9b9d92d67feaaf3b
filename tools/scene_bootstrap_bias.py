"""How much of a per-EV bias on the synthetic val set is which scenes were drawn (docs/MODEL.md, stage 41).

Reads the per-image CSVs of ``exposure eval corpus/val --model eat --weights W --per-image CSV`` (one per
weights), groups the sweep images by source scene — an HDR panorama's crops are one scene, as they move
together —, and resamples the scenes with replacement. For each group (``photo``, ``hdr``) and exposure step
it prints each weights' bias (mean predicted − mean label over the step's images), the bootstrap standard
deviation of that bias, and for every weights after the first the 90 % interval of |bias| − |first's bias|.

    python tools/scene_bootstrap_bias.py A=per_a.csv U=per_u.csv [--draws 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

GROUPS = ("photo", "hdr")


def scene_of(row: dict[str, str]) -> tuple[str, str]:
    """(group, scene) of a per-image row: HDR crops (``source`` ending in ``-hdr``) by their panorama."""
    if row["source"].endswith("-hdr"):
        return "hdr", "__".join(row["photo"].split("__")[:2])
    return "photo", row["photo"]


def per_scene_errors(path: str | Path, model: str = "eat") -> dict[str, dict[float, dict[str, list[float]]]]:
    """group → EV → scene → [mean predicted − mean label] of the sweep images of `model` in one CSV."""
    table: dict[str, dict[float, dict[str, list[float]]]] = {g: defaultdict(lambda: defaultdict(list)) for g in GROUPS}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["model"] != model or row["kind"] != "sweep":
                continue
            group, scene = scene_of(row)
            table[group][float(row["ev"])][scene].append(float(row["pred_mean"]) - float(row["label_mean"]))
    return table


def bootstrap(cells: list[dict[str, list[float]]], draws: int, seed: int) -> tuple[list[float], np.ndarray]:
    """Each weights' bias over the scenes of one step, and its value under `draws` resamplings of the scenes
    (the same draws for every weights, so differences are paired): (biases, array weights × draws)."""
    scenes = sorted(cells[0])
    if any(sorted(c) != scenes for c in cells):
        raise ValueError("the CSVs do not hold the same scenes at this step")
    sums = np.array([[sum(c[s]) for s in scenes] for c in cells])
    counts = np.array([len(cells[0][s]) for s in scenes], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(scenes), size=(draws, len(scenes)))
    boot = sums[:, picks].sum(axis=2) / counts[picks].sum(axis=1)
    return list(sums.sum(axis=1) / counts.sum()), boot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="NAME=per-image CSV; the first is the reference")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names, tables = [], []
    for spec in args.weights:
        name, _, path = spec.partition("=")
        names.append(name)
        tables.append(per_scene_errors(path))
    for group in GROUPS:
        steps = sorted(tables[0][group])
        if not steps:
            continue
        print(f"{group}: {len(tables[0][group][steps[0]])} scenes")
        for ev in steps:
            biases, boot = bootstrap([t[group][ev] for t in tables], args.draws, args.seed)
            parts = [f"{ev:+.0f} EV"] + [f"{n} {b:+.3f} (sd {s.std():.3f})" for n, b, s in zip(names, biases, boot)]
            for n, s in zip(names[1:], boot[1:]):
                low, high = np.quantile(np.abs(s) - np.abs(boot[0]), [0.05, 0.95])
                parts.append(f"|{n}|-|{names[0]}| 90% [{low:+.3f}, {high:+.3f}]")
            print("  ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
