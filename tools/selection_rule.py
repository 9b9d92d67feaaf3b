"""Stage 21's model-selection rule (docs/MODEL.md), as a tool: measure candidate weights, then decide.

    python tools/selection_rule.py measure SRC OUT [--keep-card] [--corpus corpus]
    python tools/selection_rule.py decide REF CAND [CAND …] [--pixel-guard stage21|issue] [--hdr-guard reference|issue]
                                          [--photo-guard reference|issue] [--ev-guard reference|interval]

``measure`` makes ``OUT/weights`` from SRC (a weights file or folder): the network under the shipped card
(working size, bands; thumbnail weights left out, as no set of the rule has photos under 128 px), or with
``--keep-card`` under SRC's own card (a candidate whose card carries something, e.g. a residual
calibration). It then refits the card's two-number EV head on the train stacks
(``exposure_cli.training.calibrate``), and writes what the rule reads: ``v2.json`` (``exposure eval
corpus/val``), ``brk.json`` (``exposure eval corpus/brackets_n --split val``) and ``physics.log``
(``tests/test_model_physics.py`` with these weights). Nothing of the lockbox is read.

``decide`` prints one row per measured folder and whether each candidate replaces the reference REF:
v2 MAE ≤ REF's + 0.005 (``--pixel-guard issue``: ≤ 0.5 × the baseline's, and the real-bracket val MAE ≤
REF's + 0.01 — stage 28's guard); no physics test REF passes fails; the largest photo over-side bias
(+1 … +3 EV) ≤ REF's − 0.01 (``--photo-guard issue``, stage 49: ≤ the larger of that and the issue's 0.03 —
a candidate within the issue's bar has reached what the clause moves towards); no HDR EV's |bias| worse than REF's by more than 0.01 (``--hdr-guard issue``,
stage 43: every HDR EV's |bias| ≤ the issue's 0.03 instead — v2's HDR cells are crops of four scenes, and
redrawing them moves one step's bias by more than 0.01, ``tools/scene_bootstrap_bias.py``); real-val count
(ordered + best pick + darkest + brightest flagged − reversals) ≥ REF's; known-exposure EV error ≤ REF's +
0.02 (``--ev-guard interval``, stage 50: the EV-correction error over all val stacks ≤ REF's + 0.02, and the 90 %
interval of the paired stack bootstrap of the difference — ``tools/stack_count_bootstrap.py`` — not wholly above
zero on all stacks nor on the known-exposure ones; the known clause's 12 stacks cannot resolve 0.02, stage 45).
Of several that pass, the lowest largest photo over-side bias is chosen.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVER_SIDE = (1.0, 2.0, 3.0)
#: The issue's bar on the per-EV bias, |mean predicted − mean true r| at every EV from −3 to +3.
ISSUE_BIAS_BAR = 0.03
#: How much higher a candidate's EV-correction error may be than the reference's (stops).
EV_MARGIN = 0.02

_spec = importlib.util.spec_from_file_location("stack_count_bootstrap", Path(__file__).with_name("stack_count_bootstrap.py"))
stack_count_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stack_count_bootstrap)


@dataclass
class Measured:
    """What the rule reads from one measured folder."""

    name: str
    sha: str
    v2_mae: float
    baseline_mae: float
    photo_bias: dict[float, float]
    hdr_bias: dict[float, float]
    brackets: dict
    physics_passed: int
    physics_failed: int
    brackets_result: dict  # the whole ``brk.json`` (per-stack rows for the EV interval)

    @property
    def count(self) -> int:
        b = self.brackets
        return b["ordered"] + b["best_pick"] + b["darkest_flagged"] + b["brightest_flagged"] - b["reversals"]

    @property
    def largest_over_bias(self) -> float:
        return max(self.photo_bias[ev] for ev in OVER_SIDE)


def _model_row(result: dict, model: str) -> dict:
    return next(r for r in result["results"] if r["model"] == model)


def physics_counts(log: str) -> tuple[int, int]:
    """(passed, failed) of a pytest log; a strict XPASS counts as neither (a known failure that now passes)."""
    passed = re.search(r"(\d+) passed", log)
    failed = re.search(r"(\d+) failed", log)
    return (int(passed.group(1)) if passed else 0,
            (int(failed.group(1)) if failed else 0) - log.count("XPASS(strict)"))


def load(folder: Path) -> Measured:
    v2_result, brk_result = (json.loads((folder / name).read_text()) for name in ("v2.json", "brk.json"))
    v2, brk = _model_row(v2_result, "eat"), _model_row(brk_result, "eat")
    bias = v2["sweep_bias"]
    passed, failed = physics_counts((folder / "physics.log").read_text())
    return Measured(
        name=folder.name,
        sha=json.loads((folder / "weights" / "card.json").read_text())["sha256"][:8],
        v2_mae=v2["mae"],
        baseline_mae=_model_row(v2_result, "baseline")["mae"],
        photo_bias={e["ev"]: e["mean_pred"] - e["mean_label"] for e in bias["photo"]},
        hdr_bias={e["ev"]: e["mean_pred"] - e["mean_label"] for e in bias["hdr"]},
        brackets=brk, physics_passed=passed, physics_failed=failed, brackets_result=brk_result)


def reasons_against(ref: Measured, cand: Measured, pixel_guard: str = "stage21", hdr_guard: str = "reference",
                    photo_guard: str = "reference", ev_guard: str = "reference") -> list[str]:
    """Why `cand` does not replace `ref` (empty: it does)."""
    why = []
    if pixel_guard == "stage21":
        if cand.v2_mae > ref.v2_mae + 0.005:
            why.append(f"v2 {cand.v2_mae:.4f} > {ref.v2_mae + 0.005:.4f}")
    elif pixel_guard == "issue":
        if cand.v2_mae > 0.5 * cand.baseline_mae:
            why.append(f"v2 {cand.v2_mae:.4f} > 0.5 × baseline {0.5 * cand.baseline_mae:.4f}")
        if cand.brackets["mae"] > ref.brackets["mae"] + 0.01:
            why.append(f"bracket MAE {cand.brackets['mae']:.4f} > {ref.brackets['mae'] + 0.01:.4f}")
    else:
        raise ValueError(f"unknown pixel guard {pixel_guard!r}")
    if cand.physics_failed > ref.physics_failed or cand.physics_passed < ref.physics_passed:
        why.append("physics: a test the reference passes fails")
    if photo_guard == "reference":
        over_limit = ref.largest_over_bias - 0.01
    elif photo_guard == "issue":
        over_limit = max(ref.largest_over_bias - 0.01, ISSUE_BIAS_BAR)
    else:
        raise ValueError(f"unknown photo guard {photo_guard!r}")
    if cand.largest_over_bias > over_limit:
        why.append(f"largest photo over-side bias {cand.largest_over_bias:+.3f} not ≤ {over_limit:+.3f}")
    if hdr_guard == "reference":
        worse = [ev for ev in cand.hdr_bias if ev in ref.hdr_bias and abs(cand.hdr_bias[ev]) > abs(ref.hdr_bias[ev]) + 0.01]
        if worse:
            why.append(f"HDR bias worse by > 0.01 at {worse}")
    elif hdr_guard == "issue":
        over_bar = [ev for ev in sorted(cand.hdr_bias) if abs(cand.hdr_bias[ev]) > ISSUE_BIAS_BAR]
        if over_bar:
            why.append(f"HDR |bias| > {ISSUE_BIAS_BAR} at {over_bar}")
    else:
        raise ValueError(f"unknown HDR guard {hdr_guard!r}")
    if cand.count < ref.count:
        why.append(f"count {cand.count} < {ref.count}")
    if ev_guard == "reference":
        known, ref_known = cand.brackets["ev_correction_error_known"], ref.brackets["ev_correction_error_known"]
        if known > ref_known + EV_MARGIN:
            why.append(f"known EV error {known:.2f} > {ref_known + EV_MARGIN:.2f}")
    elif ev_guard == "interval":
        why.extend(ev_interval_reasons(ref, cand))
    else:
        raise ValueError(f"unknown EV guard {ev_guard!r}")
    return why


def ev_interval_reasons(ref: Measured, cand: Measured) -> list[str]:
    """Stage 50's EV clause: all-stack error ≤ ref's + EV_MARGIN; no subset (all, known) clearly worse."""
    why = []
    for r in stack_count_bootstrap.paired_ev_error(cand.brackets_result, ref.brackets_result):
        lo, hi = r["interval_90"]
        if r["stacks"] == "all" and r["difference"] > EV_MARGIN:
            why.append(f"EV error {r['model']:.3f} > {r['reference'] + EV_MARGIN:.3f}")
        if lo > 0:
            why.append(f"EV error on {r['stacks']} stacks clearly worse: {r['difference']:+.3f}, 90 % [{lo:+.3f}, {hi:+.3f}]")
    return why


def row(m: Measured) -> str:
    b = m.brackets
    return (f"| {m.name} (`{m.sha}…`) | {m.v2_mae:.4f} | "
            + " / ".join(f"{m.photo_bias[ev]:+.3f}" for ev in OVER_SIDE) + " | "
            + " ".join(f"{m.hdr_bias[ev]:+.3f}" for ev in sorted(m.hdr_bias))
            + f" | {b['ordered']}/{b['scenes']} | {b['reversals']} | {b['best_pick']} | {b['darkest_flagged']} | "
            f"{b['brightest_flagged']} | {m.count} | {b['ev_correction_error']:.2f} ({b['ev_correction_error_known']:.2f}) | "
            f"{b['mae']:.4f} | {m.physics_passed} passed, {m.physics_failed} failed |")


def decide(ref_dir: Path, cand_dirs: list[Path], pixel_guard: str = "stage21", hdr_guard: str = "reference",
           photo_guard: str = "reference", ev_guard: str = "reference") -> str | None:
    """Print the table and each verdict; return the chosen candidate's name (None: the reference stays)."""
    ref, cands = load(ref_dir), [load(d) for d in cand_dirs]
    print("| weights | v2 MAE | photo bias +1/+2/+3 | HDR bias −3…+3 | ordered | rev | best | darkest | brightest "
          "| count | EV err (known) | bracket MAE | physics |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in [ref, *cands]:
        print(row(m))
    passing = []
    for cand in cands:
        why = reasons_against(ref, cand, pixel_guard, hdr_guard, photo_guard, ev_guard)
        if ev_guard == "interval":
            for r in stack_count_bootstrap.paired_ev_error(cand.brackets_result, ref.brackets_result):
                lo, hi = r["interval_90"]
                print(f"{cand.name}: EV error on {r['stacks']} {r['count']} stacks {r['model']:.3f} against "
                      f"{r['reference']:.3f}: {r['difference']:+.3f}, 90 % [{lo:+.3f}, {hi:+.3f}]")
        print(f"{cand.name}: " + ("replaces " + ref.name if not why else "no — " + "; ".join(why)))
        if not why:
            passing.append((cand.largest_over_bias, cand.name))
    chosen = min(passing)[1] if passing else None
    print("decision:", chosen or f"{ref.name} stays")
    return chosen


def make_weights(src: Path, out: Path, keep_card: bool) -> Path:
    """``out``: SRC's network under the shipped card (or SRC's own with `keep_card`), no thumbnail weights."""
    sys.path.insert(0, str(ROOT))
    from exposure_cli.weights import resolve_weights, sha256_file

    model = resolve_weights(src)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, out / "model.safetensors")
    card_path = (model.parent if keep_card else resolve_weights(None).parent) / "card.json"
    card = json.loads(card_path.read_text())
    card.pop("thumbnail_weights", None)
    card["sha256"] = sha256_file(out / "model.safetensors")
    card["selection_rule_candidate_of"] = str(src)
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return out


def measure(src: Path, out: Path, keep_card: bool, corpus: Path) -> None:
    weights = make_weights(src, out / "weights", keep_card)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "EXPOSURE_WEIGHTS": str(weights)}
    exposure = [sys.executable, "-m", "exposure_cli"]
    steps = [
        ("calibrate.txt", [sys.executable, "-m", "exposure_cli.training.calibrate", "--weights", str(weights),
                           "--brackets", str(corpus / "brackets_n")]),
        ("v2.log", exposure + ["eval", str(corpus / "val"), "--model", "eat", "--weights", str(weights),
                               "--json-out", str(out / "v2.json")]),
        ("brk.log", exposure + ["eval", str(corpus / "brackets_n"), "--split", "val", "--model", "eat",
                                "--weights", str(weights), "--json-out", str(out / "brk.json")]),
    ]
    for log, command in steps:
        with open(out / log, "w") as handle:
            subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    with open(out / "physics.log", "w") as handle:  # failures are a result here, not an error
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_model_physics.py"],
                       stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    passed, failed = physics_counts((out / "physics.log").read_text())
    print(f"{out}: measured ({passed} physics tests passed, {failed} failed)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure one candidate into OUT")
    m.add_argument("src", type=Path)
    m.add_argument("out", type=Path)
    m.add_argument("--keep-card", action="store_true", help="use SRC's own card (e.g. with a calibration table)")
    m.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    d = sub.add_parser("decide", help="the rule over measured folders")
    d.add_argument("ref", type=Path)
    d.add_argument("candidates", type=Path, nargs="+")
    d.add_argument("--pixel-guard", choices=("stage21", "issue"), default="stage21")
    d.add_argument("--hdr-guard", choices=("reference", "issue"), default="reference")
    d.add_argument("--photo-guard", choices=("reference", "issue"), default="reference")
    d.add_argument("--ev-guard", choices=("reference", "interval"), default="reference")
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.src, args.out, args.keep_card, args.corpus)
    else:
        decide(args.ref, args.candidates, args.pixel_guard, args.hdr_guard, args.photo_guard, args.ev_guard)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
