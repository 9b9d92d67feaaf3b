"""tools/stack_count_bootstrap.py: the issue's real-stack counts, model against heuristic, with paired stack draws."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("stack_count_bootstrap", ROOT / "tools" / "stack_count_bootstrap.py")
scb = importlib.util.module_from_spec(spec)
sys.modules["stack_count_bootstrap"] = scb
spec.loader.exec_module(scb)


def _scene(i, reversals=0, pick=2, best=2, dark=True, bright=True, flags=True):
    s = {"scene": f"s{i:02d}", "reversals": reversals, "pick": pick, "best": best}
    if flags:
        s.update(darkest_flagged=dark, brightest_flagged=bright)
    return s


def _result(model_scenes, heuristic_scenes):
    return {"data": "b", "split": "val", "scenes": len(model_scenes),
            "results": [{"model": "eat", "per_scene": model_scenes}, {"model": "mean-grey", "per_scene": heuristic_scenes}]}


def test_counts_match_the_per_stack_entries_and_a_clear_win_is_clear() -> None:
    heuristic = [_scene(i, pick=1) for i in range(30)]             # never picks the best frame
    model = [_scene(i, pick=2 if i < 20 else 0) for i in range(30)]  # picks it in 20 of 30
    rows = {r["count"]: r for r in scb.paired_counts(_result(model, heuristic))}
    best = rows["best pick"]
    assert (best["model"], best["against"], best["difference"], best["stacks_differing"]) == (20, 0, 20, 20)
    assert best["share_better"] == 1.0 and best["interval_90"][0] > 10
    within = rows["best ±1"]  # pick 0 is two frames from best 2; pick 1 is within one
    assert (within["model"], within["against"]) == (20, 30) and within["share_better"] == 0.0


def test_one_stack_of_difference_is_not_a_sure_win_and_fewer_reversals_is_better() -> None:
    heuristic = [_scene(i) for i in range(40)]
    model = [_scene(i, reversals=0 if i else 2, dark=i != 5) for i in range(40)]
    model[7]["reversals"] = 0
    rows = {r["count"]: r for r in scb.paired_counts(_result(model, heuristic), draws=4000)}
    rev = rows["reversals"]
    assert rev["difference"] == 2 and rev["share_better"] == 0.0  # more reversals is never better
    dark = rows["darkest flagged"]
    assert dark["difference"] == -1 and dark["interval_90"][0] < 0 <= dark["interval_90"][1] + 1
    # one stack in forty: it is left out of about a third of the draws, so the model ties there, not wins
    better = scb.paired_counts(_result(heuristic, [_scene(i, dark=i != 5) for i in range(40)]), draws=4000)
    share = {r["count"]: r["share_better"] for r in better}["darkest flagged"]
    assert 0.55 < share < 0.72


def test_old_files_without_flags_skip_those_rows_and_mismatched_stacks_fail() -> None:
    rows = scb.paired_counts(_result([_scene(i, flags=False) for i in range(5)], [_scene(i, flags=False) for i in range(5)]))
    assert [r["count"] for r in rows] == ["ordered", "reversals", "best pick", "best ±1"]
    with pytest.raises(ValueError):
        scb.paired_counts(_result([_scene(i) for i in range(5)], [_scene(i) for i in range(1, 6)]))
    with pytest.raises(KeyError):
        scb.per_stack(_result([], []), "baseline")


def test_the_command_prints_one_row_per_count(tmp_path: Path, capsys) -> None:
    path = tmp_path / "brk.json"
    path.write_text(json.dumps(_result([_scene(i) for i in range(6)], [_scene(i, pick=0) for i in range(6)])))
    assert scb.main([str(path), "--draws", "200"]) == 0
    out = capsys.readouterr().out
    assert "| best pick | 6 | 0 | +6 | [+6, +6] | 6 | 100% |" in out
    assert sum(line.startswith("|") for line in out.splitlines()) == 1 + 1 + 6  # header, rule, six counts


def _ev_scene(i, shift, known=True):
    # frames at −4 … +2 stops; −4 is outside the ±3 window and must not count
    rel = [-4.0, -2.0, 0.0, 2.0]
    return {"scene": f"s{i:02d}", "reversals": 0, "pick": 2, "best": 2, "ev_known": known,
            "relative_ev": rel, "ev_correction": [9.0] + [-r + shift for r in rel[1:]]}


def test_ev_error_against_other_weights_is_paired_over_stacks_and_reads_the_window() -> None:
    ref = _result([_ev_scene(i, 0.5, known=i < 4) for i in range(12)], [])
    ref["results"] = ref["results"][:1]
    better = _result([_ev_scene(i, 0.25, known=i < 4) for i in range(12)], [])
    better["results"] = better["results"][:1]
    rows = {r["stacks"]: r for r in scb.paired_ev_error(better, ref)}
    assert rows["all"]["count"] == 12 and rows["known"]["count"] == 4
    # the −4 EV frame (reading 9.0) is outside the window: errors are the shifts alone
    assert rows["all"]["reference"] == pytest.approx(0.5) and rows["all"]["model"] == pytest.approx(0.25)
    assert rows["all"]["difference"] == pytest.approx(-0.25)
    assert rows["all"]["interval_90"] == pytest.approx([-0.25, -0.25])  # every stack moves alike: no spread
    mixed = _result([_ev_scene(i, 0.5 if i % 2 else 0.0, known=i < 4) for i in range(12)], [])
    mixed["results"] = mixed["results"][:1]
    lo, hi = {r["stacks"]: r for r in scb.paired_ev_error(mixed, ref)}["all"]["interval_90"]
    assert lo < -0.25 < hi < 0  # half the stacks improve: the interval has width
