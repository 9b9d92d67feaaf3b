"""Small images: re-measure the three accuracy tables for a weights file and apply the selection rule.

One command for docs/MODEL.md "Small images" (run it again whenever the shipped weights change):

    python benchmarks/small_rule.py --weights weights                   # measure + decide (≈ 10–30 min)
    python benchmarks/small_rule.py --weights weights --apply-only      # decide again from the JSON files
    python benchmarks/small_rule.py --weights weights --sizes 64 128 --levels 320 384 512   # extra copies

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
from which every measured size below the cards' working size (``PRODUCT_LONG_SIDE``, 320) is acceptable at
its own size (a size between two measured sizes takes the rule of the one below it); ``320`` when none is
(every photo under 320 px through a thumbnail copy). Until stage 32 (docs/MODEL.md) it ran "up to 512",
written for a 512 px working size; sizes from 320 up are shrunk to 320 by the product.
The decision goes to ``decision.json`` next to the measurements.

The thumbnail copy (``imageops.THUMBNAIL_LONG_SIDE``) is one long side for every photo below the
threshold, so the rule's choice for it is the smallest L acceptable at *every* measured S below the
threshold (``decision.json``'s ``"thumbnail"``; 512 when none is).

``--sizes S … --levels L …`` measures only those photo sizes and network long sides (each L not below S;
include 512, the reference) — e.g. copies between 256 and 512 for thumbnails, added 2026-12-02 (MODEL.md).
Such a run writes to its own subfolder ``levels_<L>_<L>…`` of the weights' folder (the full-rule files
are not touched), and :func:`combined_thumbnail` takes the smallest thumbnail copy that any folder of the
weights finds acceptable at every size below the threshold (written to ``thumbnail.json`` there).
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

from bench_small import WORKING, levels  # noqa: E402, F401  (the sizes bench_small measures)

#: MAE tolerance of the rule (docs/MODEL.md "Small images"), fixed before measuring.
TOLERANCE = 0.005
#: The shipped cards' working long side since stage 10 (320). Photos from it up are shrunk to it, so the
#: threshold is decided over the measured sizes below it (docs/MODEL.md stage 32; the rule was first written
#: for a 512 px working size, where "its own size" at S = 384 was a path the product took).
PRODUCT_LONG_SIDE = 320
#: Stage 32b: the shipped-configuration check of a weights' bands, committed next to their measurements
#: (``{"moved_sizes": [S, …], …evidence}``): each listed size takes its next acceptable copy.
SHIPPED_CHECK = "shipped_check.json"
VAL_SIZES = [64, 128, 256, 384]  # the val photos are 384 px: from 512 up both policies are the same
OTHER_SIZES = [64, 128, 256, 384, 512]


def commands(weights: str, corpus: Path, out: Path, sizes: list[int] | None = None,
             only: list[int] | None = None) -> dict[str, list[str]]:
    """The three benchmark command lines: the full rule's sizes, or `sizes` with network sizes `only`."""
    py = sys.executable
    bench = str(ROOT / "benchmarks")
    val_sizes = [s for s in sizes if s <= max(VAL_SIZES)] if sizes else VAL_SIZES
    other_sizes = sizes or OTHER_SIZES
    extra = ["--levels", *map(str, only)] if only else []
    return {
        "val": [py, f"{bench}/bench_small.py", "--data", str(corpus / "val"), "--every", "4",
                "--sizes", *map(str, val_sizes), *extra, "--weights", weights, "--json", str(out / "val.json")],
        "natural": [py, f"{bench}/bench_small_photos.py", "--photos", str(corpus / "photos"),
                    "--sizes", *map(str, other_sizes), *extra, "--weights", weights,
                    "--json", str(out / "natural.json")],
        "brackets": [py, f"{bench}/bench_small.py", "--no-photos", "--brackets", str(corpus / "brackets"),
                     "--sizes", *map(str, other_sizes), *extra, "--weights", weights,
                     "--json", str(out / "brackets.json")],
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
        if level not in cell or WORKING not in cell:
            out.append(f"{name}: L = {level} or {WORKING} not measured at S = {size}")
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


def measured_levels(t: dict, size: int) -> list[int]:
    """The network long sides below 512 measured at S = `size` (in any set), ascending: the candidates."""
    return sorted({lv for name in ("val", "natural", "brackets") for lv in t[name].get(size, {}) if lv < WORKING})


def thumbnail_choice(per_size: dict, below: int) -> dict:
    """The one copy size for every photo under `below`: the smallest L acceptable at every measured S < below
    (it must have been measured at each), else 512."""
    sizes = sorted(s for s in per_size if s < below)
    ok = [set(lv for lv, fails in per_size[s]["candidates"].items() if not fails) for s in sizes]
    common = sorted(set.intersection(*ok)) if ok else []
    return {"sizes": sizes, "acceptable_at_every_size": common, "long_side": common[0] if common else WORKING}


def decide(t: dict) -> dict:
    sizes = sorted({s for name in ("val", "natural", "brackets") for s in t[name] if s < WORKING})
    per_size = {}
    for s in sizes:
        cands = {lv: failures(t, s, lv) for lv in measured_levels(t, s)}
        chosen = next((lv for lv in sorted(cands) if not cands[lv]), WORKING)
        per_size[s] = {"chosen": chosen, "candidates": cands}
    notes = []
    if all(s in per_size[s]["candidates"] for s in sizes):
        # Over the sizes the product reads at their own size: those below the cards' working long side
        # (stage 32). A photo from PRODUCT_LONG_SIDE up is shrunk to it whatever the threshold says.
        native_min = PRODUCT_LONG_SIDE
        for s in reversed([s for s in sizes if s < PRODUCT_LONG_SIDE]):
            if per_size[s]["chosen"] != s:
                break
            native_min = s
        ignored = [s for s in sizes if s >= PRODUCT_LONG_SIDE]
        if ignored:
            notes.append(f"sizes {ignored} are shrunk to the {PRODUCT_LONG_SIDE} px working size in the product: "
                         "not part of the threshold")
        below = native_min
    else:  # own sizes not measured (a --levels run): the threshold is not this run's to decide
        native_min = None
        from exposure_cli.imageops import NATIVE_MIN_LONG_SIDE

        below = NATIVE_MIN_LONG_SIDE
        notes.append(f"own sizes not measured: threshold not decided here; thumbnail copy for S < {below} "
                     f"(imageops.NATIVE_MIN_LONG_SIDE)")
    floors = [s for s in sizes if native_min is not None and s < native_min
              and per_size[s]["chosen"] not in (WORKING,)]
    if floors:
        notes.append(f"sizes {floors} would take a floor below 512 that analysis_size does not implement")
    return {"weights_sha256": t["weights_sha256"], "tolerance": TOLERANCE, "per_size": per_size,
            "native_min_long_side": native_min, "thumbnail": thumbnail_choice(per_size, below),
            "note": "; ".join(notes)}


def combined_thumbnail(folder: Path) -> dict:
    """The thumbnail copy the rule gives over every measurement of one weights file: `folder` (the full
    rule, ``results_small_rule/<sha8>/``) and its ``levels_*`` subfolders, each decided again from its JSON.
    A subfolder counts only when it measured every size below the threshold that the full rule measured;
    the smallest L acceptable at all of them wins, else 512."""
    main = decide(tables(folder))
    need = main["thumbnail"]["sizes"]
    acceptable: dict[int, str] = {}
    used = []
    for sub in [folder] + sorted(p for p in folder.glob("levels_*")
                                 if all((p / f"{n}.json").exists() for n in ("val", "natural", "brackets"))):
        d = main if sub == folder else decide(tables(sub))
        if d["weights_sha256"] != main["weights_sha256"] or not set(need) <= set(d["thumbnail"]["sizes"]):
            continue
        per = {s: d["per_size"][s] for s in need}
        used.append(sub.name)
        for lv in thumbnail_choice(per, max(need, default=0) + 1)["acceptable_at_every_size"]:
            acceptable.setdefault(lv, sub.name)
    long_side = min(acceptable, default=WORKING)
    return {"weights_sha256": main["weights_sha256"], "tolerance": TOLERANCE, "sizes": need,
            "folders": used, "acceptable_at_every_size": {str(k): v for k, v in sorted(acceptable.items())},
            "long_side": long_side}


def bands_of(per_size: dict[int, int]) -> list[list[int]]:
    """A card's ``thumbnail_bands`` from the copy chosen per measured photo size: a photo takes the choice of
    the largest measured S at or below its long side (the smallest S's below it), so consecutive sizes with
    the same choice merge into one band ``[from long side, copy]`` (copy 0 = the photo's own size)."""
    bands: list[list[int]] = []
    for size, lv in sorted(per_size.items()):
        copy = 0 if lv == size else lv
        if not bands or bands[-1][1] != copy:
            bands.append([size if bands else 1, copy])
    return bands


def thumbnail_bands(folder: Path) -> dict:
    """The thumbnail copy per photo size that the rule gives over every measurement of one weights file
    (`folder` and its ``levels_*`` subfolders): for each measured S below the full rule's threshold, the
    smallest L that no measurement at S rejects, else 512 (an L equal to S is "its own size", 0), merged
    into bands by :func:`bands_of`. Written to ``thumbnail_bands.json``; the
    weights card's ``thumbnail_bands`` carries it to the analyzer (docs/MODEL.md, "Small images")."""
    from exposure_cli.imageops import NATIVE_MIN_LONG_SIDE

    main = decide(tables(folder))
    below = main["native_min_long_side"] or NATIVE_MIN_LONG_SIDE
    fails: dict[int, dict[int, list]] = {}
    used = []
    for sub in [folder] + sorted(p for p in folder.glob("levels_*")
                                 if all((p / f"{n}.json").exists() for n in ("val", "natural", "brackets"))):
        d = main if sub == folder else decide(tables(sub))
        if d["weights_sha256"] != main["weights_sha256"]:
            continue
        used.append(sub.name)
        for size, v in d["per_size"].items():
            if int(size) < below:
                for lv, why in v["candidates"].items():
                    fails.setdefault(int(size), {}).setdefault(int(lv), []).extend(why)
    per_size = {s: min((lv for lv, why in c.items() if not why), default=WORKING) for s, c in sorted(fails.items())}
    # Stage 32b: sizes whose smallest acceptable copy failed the shipped-configuration check (the card as
    # shipped against what the selection measured, SHIPPED_CHECK) take their next acceptable copy.
    check_path = folder / SHIPPED_CHECK
    moved = json.loads(check_path.read_text())["moved_sizes"] if check_path.exists() else []
    for size in moved:
        acceptable = sorted(lv for lv, why in fails[int(size)].items() if not why)
        larger = [lv for lv in acceptable if lv > per_size[int(size)]]
        per_size[int(size)] = larger[0] if larger else WORKING
    return {"weights_sha256": main["weights_sha256"], "tolerance": TOLERANCE, "below": below, "folders": used,
            "per_size": {str(s): lv for s, lv in per_size.items()}, "bands": bands_of(per_size),
            **({"moved_by_shipped_check": [int(x) for x in moved]} if moved else {})}


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
    cols = sorted({lv for s, row in t["natural"].items() for lv in row if lv > s} | {WORKING})
    lines += ["", "Natural photos (MAE, sweeps monotonic):", "",
              "| S (px) | own size | " + " | ".join(map(str, cols)) + " |", "|---|---|" + "---|" * len(cols)]
    for s in sorted(t["natural"]):
        row = t["natural"][s]
        cells = []
        for col in ("own", *cols):
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
    if d["native_min_long_side"] is not None:
        lines.append(f"NATIVE_MIN_LONG_SIDE = {d['native_min_long_side']}"
                     + (" (no size below it passes at its own size)"
                        if d["native_min_long_side"] >= PRODUCT_LONG_SIDE else ""))
    th = d["thumbnail"]
    lines.append(f"Thumbnail copy (one size for S in {th['sizes']}): {th['long_side']} "
                 f"(acceptable at every such S: {th['acceptable_at_every_size'] or 'none'})")
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
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="photo sizes to measure (default: the full rule's); needs --levels")
    ap.add_argument("--levels", type=int, nargs="+", default=None,
                    help="network long sides to measure at each size (include 512, the reference); the run "
                         "goes to the subfolder levels_<L>_… of the weights' folder")
    args = ap.parse_args()
    from exposure_cli.weights import resolve_weights, verify_weights

    sha = verify_weights(resolve_weights(args.weights)).sha256
    if bool(args.sizes) != bool(args.levels):
        raise SystemExit("--sizes and --levels go together")
    if args.levels and WORKING not in args.levels:
        raise SystemExit(f"--levels must include {WORKING}, the rule's reference")
    folder = ROOT / "benchmarks" / "results_small_rule" / sha[:8]
    sub = "levels_" + "_".join(map(str, sorted(set(args.levels)))) if args.levels else ""
    out = args.out or (folder / sub if sub else folder)
    out.mkdir(parents=True, exist_ok=True)
    cmds = commands(str(Path(args.weights).resolve()), args.corpus, out, args.sizes, args.levels)
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
    if not args.out and (folder / "val.json").exists():
        c = combined_thumbnail(folder)
        (folder / "thumbnail.json").write_text(json.dumps(c, indent=2) + "\n")
        print(f"Thumbnail copy over every measurement of {sha[:8]}… (folders {c['folders']}): {c['long_side']} "
              f"(acceptable at every S in {c['sizes']}: {c['acceptable_at_every_size'] or 'none'})")
        b = thumbnail_bands(folder)
        (folder / "thumbnail_bands.json").write_text(json.dumps(b, indent=2) + "\n")
        print(f"Thumbnail copy per size over every measurement of {sha[:8]}… (folders {b['folders']}): "
              f"{b['per_size']} → card thumbnail_bands {b['bands']} (copy 0 = own size)")


if __name__ == "__main__":
    main()
