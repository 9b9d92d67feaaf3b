"""How sure is "the model beats the heuristic on the real stacks"? Paired stack-bootstrap of the issue's counts.

The real-stack bars (docs/MODEL.md) are counts over a few dozen stacks: scenes ordered, reversals, best-frame
pick (exact and within ±1), darkest and brightest frame flagged. Reads one ``exposure eval BRACKETS --split
S --json-out FILE`` result and, for a model against another (the ``0.5 − grey`` heuristic by default), prints
each count for both, their difference and a 90 % interval of the difference when the stacks are resampled
with replacement (the same draws for both: the comparison is paired), and the share of draws in which the
model is strictly better (fewer reversals, more of everything else).

    python tools/stack_count_bootstrap.py brk.json [--model eat] [--against mean-grey] [--draws 2000] [--seed 0]
    python tools/stack_count_bootstrap.py brk.json --reference ref_brk.json   # also: EV error against other weights

With ``--reference`` it also compares the EV-correction error (mean |ev_correction + relative EV| over frames
within ±3 EV of the best frame; all stacks, and those with known exposures) of `--model` in the two files —
two weights scored on the same stacks — with the same paired draws over stacks.

Needs the per-stack results ``exposure eval`` writes (``per_scene``); darkest / brightest flags are in them
from 2026-12-05 on (older files: those two rows are left out).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("scene_bootstrap_bias", Path(__file__).with_name("scene_bootstrap_bias.py"))
scene_bootstrap_bias = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scene_bootstrap_bias)

#: (name, per-stack value from a ``per_scene`` entry, higher is better); None: not in this file.
COUNTS = (
    ("ordered", lambda s: float(s["reversals"] == 0), True),
    ("reversals", lambda s: float(s["reversals"]), False),
    ("best pick", lambda s: float(s["pick"] == s["best"]), True),
    ("best ±1", lambda s: float(abs(s["pick"] - s["best"]) <= 1), True),
    ("darkest flagged", lambda s: float(s["darkest_flagged"]) if "darkest_flagged" in s else None, True),
    ("brightest flagged", lambda s: float(s["brightest_flagged"]) if "brightest_flagged" in s else None, True),
)


def per_stack(result: dict, model: str) -> dict[str, dict]:
    """scene id → per_scene entry of `model` in an ``exposure eval`` stacks result."""
    for r in result["results"]:
        if r["model"] == model:
            return {s["scene"]: s for s in r["per_scene"]}
    raise KeyError(f"no model {model!r} in this result (have: {[r['model'] for r in result['results']]})")


def paired_counts(result: dict, model: str = "eat", against: str = "mean-grey", draws: int = 2000,
                  seed: int = 0) -> list[dict]:
    """One row per count: totals of both, the difference, its 90 % bootstrap interval over stacks and the
    share of draws in which `model` is strictly better."""
    mine, theirs = per_stack(result, model), per_stack(result, against)
    if sorted(mine) != sorted(theirs):
        raise ValueError("the two models were not scored on the same stacks")
    scenes = sorted(mine)
    picks = np.random.default_rng(seed).integers(len(scenes), size=(draws, len(scenes)))
    rows = []
    for name, value, higher_better in COUNTS:
        a = [value(mine[s]) for s in scenes]
        b = [value(theirs[s]) for s in scenes]
        if any(v is None for v in a + b):
            continue
        diff = np.array(a) - np.array(b)
        boot = diff[picks].sum(axis=1)
        better = boot > 0 if higher_better else boot < 0
        lo, hi = np.percentile(boot, [5, 95])
        rows.append({"count": name, "model": int(sum(a)), "against": int(sum(b)), "difference": int(diff.sum()),
                     "interval_90": [float(lo), float(hi)], "share_better": float(better.mean()),
                     "stacks_differing": int(np.count_nonzero(diff)), "higher_is_better": higher_better})
    return rows


#: Frames this many stops or fewer from the best frame enter the EV-correction error (stack_evaluation's window).
EV_WINDOW = 3.0


def _ev_errors(scene: dict) -> np.ndarray:
    rel, ev = np.array(scene["relative_ev"], float), np.array(scene["ev_correction"], float)
    keep = np.abs(rel) <= EV_WINDOW
    return np.abs(ev[keep] + rel[keep])


def paired_ev_error(result: dict, reference: dict, model: str = "eat", draws: int = 2000, seed: int = 0) -> list[dict]:
    """EV-correction error of `model` in `result` and in `reference` (all stacks; known exposures only), the
    difference and its 90 % interval when the stacks are resampled (paired; frames weigh as in the eval) —
    stage 41's scene bootstrap (:func:`scene_bootstrap_bias.bootstrap`) with stacks as the scenes."""
    mine, theirs = per_stack(result, model), per_stack(reference, model)
    if sorted(mine) != sorted(theirs):
        raise ValueError("the two results were not scored on the same stacks")
    rows = []
    for subset, keep in (("all", lambda s: True), ("known", lambda s: bool(s["ev_known"]))):
        ids = [k for k in sorted(mine) if keep(theirs[k]) and len(_ev_errors(theirs[k]))]
        if not ids:
            continue
        cells = [{k: list(_ev_errors(stacks[k])) for k in ids} for stacks in (mine, theirs)]
        (a, b), boot = scene_bootstrap_bias.bootstrap(cells, draws, seed)
        lo, hi = np.percentile(boot[0] - boot[1], [5, 95])
        rows.append({"stacks": subset, "count": len(ids), "model": float(a), "reference": float(b),
                     "difference": float(a - b), "interval_90": [float(lo), float(hi)]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="exposure eval --json-out of a bracket split")
    parser.add_argument("--model", default="eat")
    parser.add_argument("--against", default="mean-grey")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", type=Path, help="another result on the same stacks: compare EV errors")
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    rows = paired_counts(result, args.model, args.against, args.draws, args.seed)
    print(f"{result.get('data', '?')} · split {result.get('split', '?')} · {result.get('scenes', '?')} stacks · "
          f"{args.model} against {args.against} · {args.draws} paired draws over stacks")
    print(f"| count | {args.model} | {args.against} | difference | 90 % interval | stacks differing | "
          f"draws where {args.model} is better |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["interval_90"]
        print(f"| {r['count']}{'' if r['higher_is_better'] else ' (fewer is better)'} | {r['model']} | {r['against']} | "
              f"{r['difference']:+d} | [{lo:+.0f}, {hi:+.0f}] | {r['stacks_differing']} | {r['share_better']:.0%} |")
    if args.reference:
        reference = json.loads(args.reference.read_text())
        print(f"\nEV-correction error of {args.model}: {args.result} against {args.reference} (lower is better)")
        print("| stacks | count | this | reference | difference | 90 % interval |")
        print("|---|---|---|---|---|---|")
        for r in paired_ev_error(result, reference, args.model, args.draws, args.seed):
            lo, hi = r["interval_90"]
            print(f"| {r['stacks']} | {r['count']} | {r['model']:.3f} | {r['reference']:.3f} | {r['difference']:+.3f} | "
                  f"[{lo:+.3f}, {hi:+.3f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
