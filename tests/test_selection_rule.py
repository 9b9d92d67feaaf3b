"""tools/selection_rule.py: stage 21's model-selection rule reads measured folders and decides as written."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("selection_rule", ROOT / "tools" / "selection_rule.py")
rule = importlib.util.module_from_spec(spec)
sys.modules["selection_rule"] = rule  # dataclasses look their module up
spec.loader.exec_module(rule)


def _folder(tmp: Path, name: str, *, mae=0.08, over=(0.04, 0.05, 0.06), hdr=(-0.04, 0.0, 0.015), counts=(40, 3, 24, 41, 33),
            known=0.88, bracket_mae=0.107, physics="15 passed in 2s", per_scene=None) -> Path:
    d = tmp / name
    (d / "weights").mkdir(parents=True)
    (d / "weights" / "card.json").write_text(json.dumps({"sha256": name.encode().hex().ljust(64, "0")}))
    photo = [{"ev": ev, "mean_pred": b, "mean_label": 0.0} for ev, b in zip((1.0, 2.0, 3.0), over)]
    photo += [{"ev": -1.0, "mean_pred": 0.0, "mean_label": 0.0}]
    hdr_rows = [{"ev": ev, "mean_pred": b, "mean_label": 0.0} for ev, b in zip((-3.0, 0.0, 3.0), hdr)]
    (d / "v2.json").write_text(json.dumps({"results": [
        {"model": "eat", "mae": mae, "sweep_bias": {"photo": photo, "hdr": hdr_rows}},
        {"model": "baseline", "mae": 0.27}]}))
    ordered, rev, best, dark, bright = counts
    (d / "brk.json").write_text(json.dumps({"results": [{"model": "eat", "scenes": 42, "ordered": ordered, "reversals": rev,
        "best_pick": best, "darkest_flagged": dark, "brightest_flagged": bright, "ev_correction_error": 0.6,
        "ev_correction_error_known": known, "mae": bracket_mae, "per_scene": per_scene or []}]}))
    (d / "physics.log").write_text(physics)
    return d


def test_a_candidate_that_lowers_the_over_side_with_the_rest_kept_replaces_the_reference(tmp_path: Path, capsys) -> None:
    ref = _folder(tmp_path, "F")
    good = _folder(tmp_path, "good", over=(0.03, 0.04, 0.049), mae=0.084)
    better = _folder(tmp_path, "better", over=(0.02, 0.03, 0.04), mae=0.084)
    assert rule.decide(ref, [good, better]) == "better"  # of two that pass, the lower largest over-side bias
    out = capsys.readouterr().out
    assert "good: replaces F" in out and "decision: better" in out


@pytest.mark.parametrize("change, reason", [
    (dict(over=(0.03, 0.04, 0.0505)), "over-side bias"),            # not 0.01 below the reference's +0.060
    (dict(over=(0.0, 0.0, 0.0), mae=0.0851), "v2"),                   # pixel error guard: + 0.005
    (dict(over=(0.0, 0.0, 0.0), hdr=(-0.0505, 0.0, 0.0)), "HDR"),      # |−0.0505| > |−0.04| + 0.01
    (dict(over=(0.0, 0.0, 0.0), counts=(40, 4, 24, 41, 33)), "count"),  # one more reversal
    (dict(over=(0.0, 0.0, 0.0), known=0.91), "known EV"),
    (dict(over=(0.0, 0.0, 0.0), physics="1 failed, 14 passed in 2s"), "physics"),
])
def test_each_clause_of_the_rule_can_reject(tmp_path: Path, change: dict, reason: str) -> None:
    ref, cand = rule.load(_folder(tmp_path, "F")), rule.load(_folder(tmp_path, "cand", **change))
    why = rule.reasons_against(ref, cand)
    assert len(why) == 1 and reason in why[0], why


def test_the_issue_pixel_guard_allows_more_pixel_error_but_watches_the_real_brackets(tmp_path: Path) -> None:
    ref = rule.load(_folder(tmp_path, "F"))
    costly = rule.load(_folder(tmp_path, "costly", over=(0.0, 0.0, 0.0), mae=0.10))
    assert rule.reasons_against(ref, costly, "stage21") and not rule.reasons_against(ref, costly, "issue")
    worse_real = rule.load(_folder(tmp_path, "real", over=(0.0, 0.0, 0.0), mae=0.10, bracket_mae=0.118))
    assert "bracket MAE" in rule.reasons_against(ref, worse_real, "issue")[0]
    too_costly = rule.load(_folder(tmp_path, "far", over=(0.0, 0.0, 0.0), mae=0.136))
    assert "baseline" in rule.reasons_against(ref, too_costly, "issue")[0]


def test_a_strict_xpass_is_not_counted_as_a_failure() -> None:
    assert rule.physics_counts("1 failed, 14 passed\nXPASS(strict) rocket") == (14, 0)
    assert rule.physics_counts("2 failed, 13 passed") == (13, 2)


def test_the_issue_hdr_guard_reads_the_issue_bar_not_the_reference(tmp_path: Path) -> None:
    ref = rule.load(_folder(tmp_path, "F", hdr=(-0.005, 0.0, 0.001)))
    # 0.025 is 0.02 worse than the reference's −0.005 but inside the issue's 0.03
    drifted = rule.load(_folder(tmp_path, "drifted", over=(0.0, 0.0, 0.0), hdr=(-0.025, 0.0, 0.001)))
    assert "HDR" in rule.reasons_against(ref, drifted)[0]
    assert rule.reasons_against(ref, drifted, hdr_guard="issue") == []
    past_bar = rule.load(_folder(tmp_path, "past", over=(0.0, 0.0, 0.0), hdr=(-0.01, 0.0, 0.0301)))
    why = rule.reasons_against(ref, past_bar, hdr_guard="issue")
    assert len(why) == 1 and "HDR |bias| > 0.03 at [3.0]" in why[0], why
    with pytest.raises(ValueError):
        rule.reasons_against(ref, drifted, hdr_guard="loose")


def test_the_issue_photo_guard_accepts_a_candidate_within_the_issue_bar(tmp_path: Path) -> None:
    """Stage 49: with the reference at +0.032 the old clause asks ≤ +0.022; the issue's guard asks ≤ 0.03
    (the larger of the two), and still asks ref − 0.01 when that is the larger."""
    ref = rule.load(_folder(tmp_path, "C", over=(0.0, 0.01, 0.032)))
    within = rule.load(_folder(tmp_path, "within", over=(0.0, 0.01, 0.029)))
    assert "over-side" in rule.reasons_against(ref, within)[0]
    assert rule.reasons_against(ref, within, photo_guard="issue") == []
    past = rule.load(_folder(tmp_path, "past", over=(0.0, 0.01, 0.0305)))
    why = rule.reasons_against(ref, past, photo_guard="issue")
    assert len(why) == 1 and "not ≤ +0.030" in why[0], why
    far_ref = rule.load(_folder(tmp_path, "F", over=(0.0, 0.01, 0.060)))
    assert "not ≤ +0.050" in rule.reasons_against(far_ref, rule.load(_folder(tmp_path, "c2", over=(0.0, 0.0, 0.051))),
                                                     photo_guard="issue")[0]
    with pytest.raises(ValueError):
        rule.reasons_against(ref, within, photo_guard="loose")


def _stacks(errors: list[list[float]], known: list[bool]) -> list[dict]:
    """Per-stack rows as ``exposure eval`` writes them: frames at relative EV 0, −1, −2, … whose
    ``ev_correction`` misses by the given stops (one frame 5 stops away, outside the ±3 EV window, misses by 9)."""
    rows = []
    for k, (errs, is_known) in enumerate(zip(errors, known)):
        rel = [-float(i) for i in range(len(errs))] + [-5.0]
        rows.append({"scene": f"s{k:02d}", "ev_known": is_known, "relative_ev": rel,
                     "ev_correction": [-r + e for r, e in zip(rel, list(errs) + [9.0])]})
    return rows


def test_the_interval_ev_guard_refuses_only_a_clear_or_large_rise(tmp_path: Path) -> None:
    """Stage 50: one noisy known stack no longer decides; a rise on every stack, or a large one, still does."""
    n = 30
    known = [k < 8 for k in range(n)]
    base = [[0.5, 0.6, 0.4] for _ in range(n)]
    ref = rule.load(_folder(tmp_path, "C", known=0.80, per_scene=_stacks(base, known)))
    # one known stack 0.45 stops worse on each frame: all-stack +0.015, and a draw without it differs by 0
    half = [list(s) for s in base]
    half[0] = [e + 0.45 for e in half[0]]
    one_stack = rule.load(_folder(tmp_path, "one", over=(0.0, 0.0, 0.0), known=0.91, per_scene=_stacks(half, known)))
    assert "known EV" in rule.reasons_against(ref, one_stack)[0]  # the old clause: 0.91 > 0.82
    assert rule.reasons_against(ref, one_stack, ev_guard="interval") == []  # all +0.015, interval spans 0
    noisy = [list(s) for s in base]  # the same stack 0.9 stops worse: all-stack +0.03, past the margin
    noisy[0] = [e + 0.9 for e in noisy[0]]
    big = rule.load(_folder(tmp_path, "big", over=(0.0, 0.0, 0.0), known=0.91, per_scene=_stacks(noisy, known)))
    why = rule.reasons_against(ref, big, ev_guard="interval")
    assert len(why) == 1 and "EV error 0.530 > 0.520" in why[0], why
    # every stack 0.015 stops worse: within the margin, but every draw says worse
    everywhere = rule.load(_folder(tmp_path, "all", over=(0.0, 0.0, 0.0), known=0.815,
                                   per_scene=_stacks([[e + 0.015 for e in s] for s in base], known)))
    why = rule.reasons_against(ref, everywhere, ev_guard="interval")
    assert len(why) == 2 and all("clearly worse" in w for w in why), why  # on all stacks and on the known ones
    better = rule.load(_folder(tmp_path, "better", over=(0.0, 0.0, 0.0), per_scene=_stacks([[e - 0.1 for e in s] for s in base], known)))
    assert rule.reasons_against(ref, better, ev_guard="interval") == []
    with pytest.raises(ValueError):
        rule.reasons_against(ref, better, ev_guard="loose")
