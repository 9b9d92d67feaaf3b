"""Small images: re-measure the three accuracy tables for a weights file and apply the selection rule.

One command for docs/MODEL.md "Small images" (run it again whenever the shipped weights change):

    python benchmarks/small_rule.py --weights weights                   # measure + decide (≈ 10–30 min)
    python benchmarks/small_rule.py --weights weights --apply-only      # decide again from the JSON files

It runs, each in its own process with one torch thread (``--parallel`` at a time),

* ``bench_small.py --data CORPUS/val --sizes 64 128 256 384 --every 4``  (validation photos),
* ``bench_small_photos.py --photos CORPUS/photos --sizes 64 128 256 384 512``  (natural photos, −2/0/+2 EV),
* ``bench_small.py --no-photos --brackets CORPUS/brackets --sizes 64 128 256 384 512``  (real val brackets),

writing ``val.json``, ``natural.json`` and ``brackets.json`` (and their logs) to ``--out`` (default
``benchmarks/results_small_rule/<first 8 hex of the weights' sha256>/``), then applies the rule written in
docs/MODEL.md before any of these measurements — for a photo size S below 512 a network long side L < 512
is acceptable when, against L = 512 at the same S, on each set that has S:

1. MAE is at most ``TOLERANCE`` (0.005) higher, and
2. ordering is not worse: val and natural sweep-monotonic shares not lower, ordered bracket stacks not
   fewer, bracket reversals not more;

the smallest acceptable L is used, else 512 — and prints the tables (MODEL.md's layout), the decision per
S with every failed condition, and the ``NATIVE_MIN_LONG_SIDE`` the rule gives: the smallest measured S
from which every measured size up to 512 is acceptable at its own size (a size between two measured sizes
takes the rule of the one below it); ``513`` (> the working size: every photo at 512) when none is.
The decision goes to ``decision.json`` next to the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_small import WORKING, levels  # noqa: E402  (the sizes bench_small measures)

#: MAE tolerance of the rule (docs/MODEL.md "Small images"), fixed before measuring.
TOLERANCE = 0.005
VAL_SIZES = [64, 128, 256, 384]  # the val photos are 384 px: from 512 up both policies are the same
OTHER_SIZES = [64, 128, 256, 384, 512]


def commands(weights: str, corpus: Path, out: Path) -> dict[str, list[str]]:
    py = sys.executable
    bench = str(ROOT / "benchmarks")
    return {
        "val": [py, f"{bench}/bench_small.py", "--data", str(corpus / "val"), "--every", "4",
                "--sizes", *map(str, VAL_SIZES), "--weights", weights, "--json", str(out / "val.json")],
        "natural": [py, f"{bench}/bench_small_photos.py", "--photos", str(corpus / "photos"),
                    "--sizes", *map(str, OTHER_SIZES), "--weights", weights, "--json", str(out / "natural.json")],
        "brackets": [py, f"{bench}/bench_small.py", "--no-photos", "--brackets", str(corpus / "brackets"),
                     "--sizes", *map(str, OTHER_SIZES), "--weights", weights, "--json", str(out / "brackets.json")],
    }


def measure(cmds: dict[str, list[str]], out: Path, parallel: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    todo = list(cmds.items())
    running: list[tuple[str, subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < parallel:
            name, cmd = todo.pop(0)
            print(f"[{time.strftime('%H:%M:%S', time.gmtime())} UTC] start {name}: {' '.join(cmd)}", flush=True)
            log = open(out / f"{name}.log", "w")
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT),
                            time.time()))
        time.sleep(2)
        for item in list(running):
            name, proc, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"[{time.strftime('%H:%M:%S', time.gmtime())} UTC] {name} exited {proc.returncode} after "
                      f"{time.time() - t0:.0f} s", flush=True)
                if proc.returncode:
                    raise SystemExit(f"{name} failed: see {out / (name + '.log')}")


def tables(out: Path) -> dict[str, dict]:
    """{set: {S: {L: {"mae", "mono" | "ordered", "reversals", …}}}} from the three JSON files."""
    val = json.loads((out / "val.json").read_text())
    nat = json.loads((out / "natural.json").read_text())
    brk = json.loads((out / "brackets.json").read_text())
    sha = {val["weights_sha256"], nat["weights_sha256"], brk["weights_sha256"]}
    if len(sha) != 1:
        raise SystemExit(f"the three files measured different weights: {sorted(sha)}")
    res: dict[str, dict] = {"val": {}, "natural": {}, "brackets": {}, "weights_sha256": sha.pop()}
    for s, cell in val["photos"]["sizes"].items():
        res["val"][int(s)] = {int(lv): {"mae": c["mae"], "mono": c["sweep_monotonic_share"], "ssim": c["ssim"],
                                        "auc_under": c["auc_under"], "auc_over": c["auc_over"],
                                        "orig": c["originals_mean_abs"]}
                              for lv, c in cell.items() if lv.isdigit()}
    for s, cell in nat["sizes"].items():
        res["natural"][int(s)] = {int(lv): {"mae": c["mae"], "mono": c["monotonic_share"]} for lv, c in cell.items()}
    for s, cell in brk["brackets"]["sizes"].items():
        res["brackets"][int(s)] = {int(lv): {k: c[k] for k in ("mae", "ordered", "reversals", "best_pick",
                                                               "best_pick_within_1", "ev_correction_error")}
                                   for lv, c in cell.items()}
    res["scenes"] = brk["brackets"]["scenes"]
    return res


def failures(t: dict, size: int, level: int) -> list[str]:
    """The rule's conditions that L = `level` fails at S = `size` against L = 512 (empty: acceptable)."""
    out = []
    for name in ("val", "natural", "brackets"):
        cell = t[name].get(size)
        if cell is None:
            continue
        own, ref = cell[level], cell[WORKING]
        if own["mae"] > ref["mae"] + TOLERANCE:
            out.append(f"{name} MAE {own['mae']:.4f} vs {ref['mae']:.4f} (+{own['mae'] - ref['mae']:.4f})")
        if name in ("val", "natural") and (own["mono"] or 0) < (ref["mono"] or 0):
            out.append(f"{name} sweeps monotonic {own['mono']:.0%} vs {ref['mono']:.0%}")
        if name == "brackets":
            if own["ordered"] < ref["ordered"]:
                out.append(f"brackets ordered {own['ordered']} vs {ref['ordered']}")
            if own["reversals"] > ref["reversals"]:
                out.append(f"brackets reversals {own['reversals']} vs {ref['reversals']}")
    return out


def decide(t: dict) -> dict:
    sizes = sorted({s for name in ("val", "natural", "brackets") for s in t[name] if s < WORKING})
    per_size = {}
    for s in sizes:
        cands = {lv: failures(t, s, lv) for lv in levels(s)[:-1]}
        chosen = next((lv for lv in sorted(cands) if not cands[lv]), WORKING)
        per_size[s] = {"chosen": chosen, "candidates": cands}
    native_min = WORKING + 1
    for s in reversed(sizes):
        if per_size[s]["chosen"] != s:
            break
        native_min = s
    floors = [s for s in sizes if s < native_min and per_size[s]["chosen"] not in (WORKING,)]
    return {"weights_sha256": t["weights_sha256"], "tolerance": TOLERANCE, "per_size": per_size,
            "native_min_long_side": native_min,
            "note": (f"sizes {floors} would take a floor below 512 that analysis_size does not implement"
                     if floors else "")}


def pct(x) -> str:
    return f"{(x or 0) * 100:.0f} %"


def report(t: dict, d: dict) -> str:
    lines = [f"weights sha256 {t['weights_sha256']}", "", "Validation photos:", "",
             "| S (px) | network at | MAE↓ | SSIM↑ | mono↑ | AUC under↑ | AUC over↑ | \\|r\\| originals↓ |",
             "|---|---|---|---|---|---|---|---|"]
    chosen = {s: v["chosen"] for s, v in d["per_size"].items()}
    for s in sorted(t["val"]):
        for lv in sorted(t["val"][s]):
            c = t["val"][s][lv]
            at = f"own ({lv})" if lv == s else str(lv)
            b = "**" if chosen.get(s) == lv else ""
            lines.append(f"| {s} | {b}{at}{b} | {b}{c['mae']:.4f}{b} | {c['ssim']:.3f} | {pct(c['mono'])} | "
                         f"{c['auc_under'] or 0:.3f} | {c['auc_over'] or 0:.3f} | {c['orig'] or 0:.3f} |")
    lines += ["", "Natural photos (MAE, sweeps monotonic):", "", "| S (px) | own size | 128 | 256 | 512 |",
              "|---|---|---|---|---|"]
    for s in sorted(t["natural"]):
        row = t["natural"][s]
        cells = []
        for col in ("own", 128, 256, WORKING):
            lv = s if col == "own" else col
            if lv not in row or (col != "own" and lv <= s) or (col == "own" and s == WORKING):
                cells.append("–")
                continue
            b = "**" if chosen.get(s) == lv else ""
            cells.append(f"{b}{row[lv]['mae']:.4f}{b} ({pct(row[lv]['mono'])})")
        if s == WORKING:
            cells[-1] = f"{row[WORKING]['mae']:.4f} ({pct(row[WORKING]['mono'])})"
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Real brackets ({t['scenes']} val stacks):", "",
              "| S (px) | network at | MAE↓ | ordered↑ | reversals↓ | best↑ | best ±1↑ | EV err↓ |",
              "|---|---|---|---|---|---|---|---|"]
    for s in sorted(t["brackets"]):
        for lv in sorted(t["brackets"][s]):
            c = t["brackets"][s][lv]
            at = f"own ({lv})" if lv == s else str(lv)
            b = "**" if chosen.get(s) == lv else ""
            lines.append(f"| {s} | {b}{at}{b} | {b}{c['mae']:.4f}{b} | {c['ordered']}/{t['scenes']} | "
                         f"{c['reversals']} | {c['best_pick']} | {c['best_pick_within_1']} | "
                         f"{c['ev_correction_error']:.2f} |")
    lines += ["", f"Decision (tolerance {TOLERANCE}):"]
    for s, v in d["per_size"].items():
        lines.append(f"* S = {s}: network at {v['chosen']}")
        for lv, fails in v["candidates"].items():
            lines.append(f"    - L = {lv}: " + ("acceptable" if not fails else "fails: " + "; ".join(fails)))
    lines.append(f"NATIVE_MIN_LONG_SIDE = {d['native_min_long_side']}"
                 + (" (no size passes: every photo at 512)" if d["native_min_long_side"] > WORKING else ""))
    if d["note"]:
        lines.append("Note: " + d["note"])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="weights file or folder to measure")
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus", help="holds val/, photos/, brackets/")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--parallel", type=int, default=3, help="benchmarks run at once (one core each)")
    ap.add_argument("--apply-only", action="store_true", help="decide from the JSON files already in --out")
    args = ap.parse_args()
    from exposure_cli.weights import resolve_weights, verify_weights

    sha = verify_weights(resolve_weights(args.weights)).sha256
    out = args.out or ROOT / "benchmarks" / "results_small_rule" / sha[:8]
    out.mkdir(parents=True, exist_ok=True)
    cmds = commands(str(Path(args.weights).resolve()), args.corpus, out)
    if not args.apply_only:
        (out / "commands.txt").write_text("\n".join("OMP_NUM_THREADS=1 " + " ".join(c) for c in cmds.values()) + "\n")
        measure(cmds, out, max(1, args.parallel))
    t = tables(out)
    if t["weights_sha256"] != sha:
        raise SystemExit(f"{out} holds measurements of {t['weights_sha256'][:8]}…, not of {sha[:8]}…")
    d = decide(t)
    text = report(t, d)
    (out / "decision.json").write_text(json.dumps(d, indent=2, default=str) + "\n")
    (out / "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
