"""Stage 20's rule (docs/MODEL.md): may other weights read the smallest photos through a smaller copy?

    python benchmarks/thumbnail_weights_rule.py --candidate DIR --reference DIR --size 64 [--json decision.json]

Each DIR holds ``val.json``, ``natural.json`` and ``brackets.json`` as ``benchmarks/small_rule.py`` writes
them (``bench_small.py`` / ``bench_small_photos.py`` with ``--sizes S --levels …``): the candidate weights
measured at the copies L it may use, the reference (the shipped weights, what the product does today)
at 512. The small-images rule's conditions (``small_rule.failures``: MAE at most 0.005 higher on each set,
ordering not worse) are applied to the candidate at each L against the *reference* at 512, at photo size S;
the smallest acceptable L is chosen, else none.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from small_rule import WORKING, failures, tables  # noqa: E402


def merged(candidate: dict, reference: dict, size: int) -> dict:
    """Tables whose cells at S = `size` hold the candidate's levels below 512 and the reference's 512."""
    out: dict = {"val": {}, "natural": {}, "brackets": {}}
    for name in out:
        cand, ref = candidate[name].get(size, {}), reference[name].get(size, {})
        if WORKING not in ref:
            raise SystemExit(f"the reference has no L = {WORKING} at S = {size} in {name}")
        out[name][size] = {**{lv: c for lv, c in cand.items() if lv < WORKING}, WORKING: ref[WORKING]}
    if candidate.get("scenes") != reference.get("scenes"):
        raise SystemExit(f"different bracket stacks: {candidate.get('scenes')} vs {reference.get('scenes')}")
    return out


def decide(candidate_dir: Path, reference_dir: Path, size: int) -> dict:
    cand, ref = tables(candidate_dir), tables(reference_dir)
    t = merged(cand, ref, size)
    levels = sorted({lv for name in t for lv in t[name][size] if lv < WORKING})
    cands = {lv: failures(t, size, lv) for lv in levels}
    chosen = next((lv for lv in levels if not cands[lv]), None)
    return {"size": size, "candidate_sha256": cand["weights_sha256"], "reference_sha256": ref["weights_sha256"],
            "levels": {str(lv): fails for lv, fails in cands.items()}, "chosen": chosen,
            "table": {name: {str(lv): c for lv, c in t[name][size].items()} for name in t}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidate", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    d = decide(args.candidate, args.reference, args.size)
    print(f"S = {d['size']}: candidate {d['candidate_sha256'][:12]} at L < 512 against reference "
          f"{d['reference_sha256'][:12]} at 512")
    for name, cells in d["table"].items():
        for lv, c in cells.items():
            who = "reference" if int(lv) == WORKING else "candidate"
            extra = (f"ordered {c['ordered']} reversals {c['reversals']} best {c['best_pick']} "
                     f"EV err {c['ev_correction_error']:.2f}" if name == "brackets" else f"mono {c['mono']:.0%}")
            print(f"  {name:9s} {who:9s} L = {lv:>3}: MAE {c['mae']:.4f}  {extra}")
    for lv, fails in d["levels"].items():
        print(f"  L = {lv}: " + ("acceptable" if not fails else "fails: " + "; ".join(fails)))
    print(f"chosen: {d['chosen'] or 'none (nothing ships)'}")
    if args.json:
        args.json.write_text(json.dumps(d, indent=1) + "\n")


if __name__ == "__main__":
    main()
