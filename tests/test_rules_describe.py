"""``describe`` and ``explain`` word for word, the units explain gives computed sides, the defaults a Python
rule set inherits, and the rule-set registry (presets, plugins as class, instance or factory, files).

``tools/mutation.py rules-explain`` runs these tests (with test_rules_sets.py, test_rules_plugins.py and
test_rules_cli.py) against mutants of those functions.
"""

from __future__ import annotations

import numpy as np
import pytest

from exposure_cli import rules, stats
from exposure_cli.registry import RegistryError
from exposure_cli.rules import MetricFrame, RuleError, RuleSet, ScoreResult, parse_rule_text
from exposure_cli.rules.expr import format_number
from exposure_cli.stats import Thresholds

SCAN = Thresholds()
ROW = '[[rows]]\nscore = 1\nwhen = "true"\n'


def frame_of(*residuals: np.ndarray) -> MetricFrame:
    rows = []
    for k, residual in enumerate(residuals):
        row = stats.image_stats(residual, {}, SCAN)
        row.update(path=f"p{k}.jpg", status="ok", error=None, width=100, height=100)
        rows.append(row)
    return MetricFrame.from_rows(rows, SCAN)


def band_map(over_rows: int, under_rows: int) -> np.ndarray:
    """100×100: `over_rows` rows at −0.5 (over-exposed), then `under_rows` rows at +0.5, the rest 0."""
    residual = np.zeros((100, 100), np.float32)
    residual[:over_rows] = -0.5
    residual[over_rows:over_rows + under_rows] = 0.5
    return residual


# ------------------------------------------------------------------------------------------- describe


def test_describe_a_table_line_by_line():
    rule_set = parse_rule_text(
        'name = "tab"\ndescription = "A table"\non_missing_region = "fail"\n'
        '[thresholds]\nunder = 0.05\nover = 0.2\n'
        '[grades]\nA = 90\nB = 70.5\n'
        '[define]\nspread = "global.p95_residual - global.p05_residual"\nlow = "global.over_pct < 1"\n'
        '[[rows]]\nscore = 100\nwhen = "face.bad_pct < 2"\nlabel = "good"\n'
        '[[rows]]\nscore = 7.5\nwhen = "spread > 0.3"\n'
        '[otherwise]\nscore = 40\nlabel = "rest"\n')
    assert rule_set.describe().split("\n") == [
        "tab: A table",
        "mode: table   origin: text",
        "thresholds: under = 0.05, over = 0.2",
        "on_missing_region: fail",
        "define spread = global.p95_residual - global.p05_residual",
        "define low = global.over_pct < 1",
        "    100  when face.bad_pct < 2  # good",
        "    7.5  when spread > 0.3",
        "     40  otherwise  # rest",
        "grades: A ≥ 90, B ≥ 70.5",
    ]


def test_describe_deductions_line_by_line():
    rule_set = parse_rule_text(
        'name = "ded"\nstart = 80\nfloor = 12.5\n'
        '[[deductions]]\nwhen = "sky.over_pct > 5"\npoints = 2.5\nlabel = "sky"\n'
        '[[deductions]]\nwhen = "true"\npoints = "background.bad_pct / 2"\n', file="d.toml", origin="file d.toml")
    assert rule_set.describe().split("\n") == [
        "ded: ",
        "mode: deductions   origin: file d.toml",
        "thresholds: the scan's",
        "on_missing_region: skip",
        "start 80, floor 12.5",
        "  −(2.5)  when sky.over_pct > 5  # sky",
        "  −(background.bad_pct / 2)  when true",
        "grades: A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40, F ≥ 0",
    ]


# -------------------------------------------------------------------------------------------- explain


def test_explain_gives_computed_sides_the_unit_of_what_they_add_up():
    """A sum or difference of percentages is a percentage; |residual| is a plain size, not 'over'/'under';
    a product, or a percentage minus a residual, is a plain number."""
    rule_set = parse_rule_text(
        'name = "u"\n'
        '[[deductions]]\nwhen = "global.over_pct + global.under_pct >= 20"\npoints = 1\n'
        '[[deductions]]\nwhen = "abs(global.mean_residual) > 0.05"\npoints = 1\n'
        '[[deductions]]\nwhen = "global.over_pct - global.mean_residual > 1"\npoints = 1\n'
        '[[deductions]]\nwhen = "abs(global.over_pct) > 1"\npoints = 1\n'
        '[[deductions]]\nwhen = "global.over_pct * 2 > 1"\npoints = 1\n'
        '[[deductions]]\nwhen = "global.over_pct - 25 > 1"\npoints = 1\n'
        '[[deductions]]\nwhen = "abs(2) > 1"\npoints = 1\n')
    frame = frame_of(band_map(30, 10))  # 30 % over, 10 % under, mean residual about −0.1
    mean = float(frame.metric("global.mean_residual")[0])  # from the fine histogram: −0.0998
    assert mean == pytest.approx(-0.1, abs=5e-4)
    details = [line["details"] for line in rule_set.explain(frame, 0)[:-1]]
    assert details == [
        ["✓ global.over_pct + global.under_pct = 40 % ≥ 20 %"],
        [f"✓ abs(global.mean_residual) = {format_number(-mean)} > 0.05"],
        [f"✓ global.over_pct - global.mean_residual = {format_number(30 - mean)} > 1"],
        ["✓ abs(global.over_pct) = 30 % > 1 %"],
        ["✓ global.over_pct * 2 = 60 > 1"],
        ["✓ global.over_pct - 25 = 5 % > 1 %"],
        ["✓ abs(2) = 2 > 1"],
    ]
    # a side without a unit of its own takes the other side's: a mixed sum against a percentage reads as one
    mixed = parse_rule_text('name = "m"\n[[rows]]\nscore = 1\n'
                            'when = "global.over_pct - global.mean_residual > global.under_pct"\n')
    assert mixed.explain(frame, 0)[0]["details"] == [
        f"✓ global.over_pct - global.mean_residual = {format_number(30 - mean)} % > global under-exposed area 10 %"]


class Linear(RuleSet):
    """A Python rule set that keeps the defaults: score = 100 − over %, one reason per photo."""

    name = "linear"
    description = "100 minus the over-exposed share"

    def score(self, frame: MetricFrame) -> ScoreResult:
        over = frame.metric("global.over_pct")
        scores = 100.0 - over
        return ScoreResult(scores, [self.grade(s) for s in scores], [f"photo {k}: {v:g} % over" for k, v in enumerate(over)])


def test_a_python_rule_set_explains_its_result_and_describes_its_origin():
    frame = frame_of(band_map(10, 0), band_map(25, 0))
    assert Linear().explain(frame, 1) == [
        {"rule": "result", "condition": "", "fired": True, "effect": "75", "details": ["photo 1: 25 % over"]}]
    assert Linear().explain(frame, 0)[0]["effect"] == "90"
    assert Linear().describe() == "linear: 100 minus the over-exposed share\n(Python rule set from built-in)"
    plugin = Linear()
    plugin.origin = "plugin demo:Linear"
    assert plugin.describe().endswith("\n(Python rule set from plugin demo:Linear)")


def test_explain_under_fail_a_condition_on_a_missing_region_does_not_fire_but_decides():
    """`not (face.bad_pct < 5)` holds on a photo without a face (n/a is never < 5); under "fail" the row
    is not fired, it decides the score (0), and every missing region is named."""
    rule_set = parse_rule_text(
        'name = "f"\n'
        '[[rows]]\nscore = 80\nwhen = "not (face.bad_pct < 5) or sky.over_pct > 90"\non_missing_region = "fail"\n'
        '[[rows]]\nscore = 60\nwhen = "true"\n')
    first, second, result = rule_set.explain(frame_of(band_map(0, 0)), 0)
    assert (first["fired"], first["decisive"], first["effect"]) == (False, True, "80")
    assert first["details"][-1] == "no face, sky found: on_missing_region = 'fail'"
    assert (second["fired"], second["decisive"]) == (True, False)
    assert result["effect"] == "0 (F)"
    skipping = parse_rule_text(
        'name = "s"\n'
        '[[rows]]\nscore = 80\nwhen = "not (face.bad_pct < 5) or sky.over_pct > 90"\n'
        '[[rows]]\nscore = 60\nwhen = "true"\n')
    first, second, result = skipping.explain(frame_of(band_map(0, 0)), 0)
    assert (first["fired"], first["decisive"]) == (False, False)
    assert first["details"][-1] == "no face, sky found: on_missing_region = 'skip'"
    assert (second["fired"], second["decisive"], result["effect"]) == (True, True, "60 (C)")


def test_the_result_line_of_explain_has_score_and_grade():
    rule_set = parse_rule_text('name = "g"\n[[rows]]\nscore = 72.5\nwhen = "global.over_pct > 5"\n'
                               '[otherwise]\nscore = 95\n')
    frame = frame_of(band_map(0, 0), band_map(10, 0))
    assert rule_set.explain(frame, 1)[-1]["effect"] == "72.5 (C)"
    assert rule_set.explain(frame, 0)[-1]["effect"] == "95 (A)"
    assert rule_set.explain(frame, 0)[0]["effect"] == "72.5"


# ------------------------------------------------------------------------------------------- registry


class Named(Linear):
    name = "named"


class Nameless(Linear):
    name = ""


class BadName(Linear):
    name = "bad name!"


def test_instances_classes_and_factories_become_rule_sets():
    instance = Named()
    assert rules._instantiate("x", instance, "plugin p:i") is instance
    assert instance.origin == "plugin p:i"  # a plugin's origin replaces the class default "built-in"
    made = rules._instantiate("x", Named, "plugin p:Named")
    assert isinstance(made, Named) and made.name == "named" and made.origin == "plugin p:Named"
    nameless = rules._instantiate("fallback", lambda: Nameless(), "plugin p:f")
    assert nameless.name == "fallback"
    kept = Named()
    kept.origin = "somewhere"
    assert rules._instantiate("x", kept, "plugin p:k").origin == "somewhere"
    preset = Named()
    assert rules._instantiate("x", preset, "built-in preset").origin == "built-in"


def test_what_is_not_a_rule_set_is_refused_with_its_type():
    with pytest.raises(RuleError) as info:
        rules._instantiate("weird", {"a": 1}, "plugin p:d")
    assert str(info.value) == ("rule set 'weird' from plugin p:d is not a RuleSet (got dict); an entry point must "
                               "name a RuleSet subclass, instance or factory")
    with pytest.raises(RuleError) as info:
        rules._instantiate("weird", lambda: 5, "plugin p:five")
    assert str(info.value).startswith("rule set 'weird' from plugin p:five is not a RuleSet (got int);")
    with pytest.raises(RuleError) as info:
        rules._instantiate("weird", lambda: None, "plugin p:none")
    assert str(info.value).startswith("rule set 'weird' from plugin p:none is not a RuleSet (got function);")
    with pytest.raises(RuleError) as info:
        rules._instantiate("bad", BadName, "plugin p:Bad")
    assert str(info.value) == ("rule set from plugin p:Bad is named 'bad name!': a name is 1-64 ASCII letters, "
                               "digits, '-' and '_', starting with a letter or digit (it becomes the column suffix "
                               "score_<name>)")


def test_presets_are_registered_from_their_files():
    registry = rules.build_registry()  # a fresh one: RULE_SETS was built at import
    assert registry.names() == sorted(rules.PRESETS)
    for name in rules.PRESETS:
        assert registry.origin(name) == "built-in preset"
        rule_set = registry.get(name)()  # the preset's loader reads its file now
        assert isinstance(rule_set, rules.TomlRuleSet)
        assert (rule_set.name, rule_set.origin, rule_set.source) == (name, "built-in preset", f"preset {name}.toml")
        assert rule_set.describe() == rules.get_rule_set(name).describe()
    with pytest.raises(RegistryError, match="unknown rule set 'nigth'; did you mean 'night'"):
        rules.get_rule_set("nigth")


def test_specs_that_look_like_paths_are_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "portrait").write_text('name = "not-the-preset"\n' + ROW, encoding="utf-8")
    assert rules.load_rule_set("portrait").origin == "built-in preset"  # a bare name stays the preset
    (tmp_path / "mine.TOML").write_text('name = "mine"\n' + ROW, encoding="utf-8")
    assert rules.load_rule_set("mine.TOML").name == "mine"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rules").write_text('name = "sub"\n' + ROW, encoding="utf-8")
    assert rules.load_rule_set("sub/rules").name == "sub"
    for spec in ("absent.toml", "sub/absent", "sub\\absent"):
        with pytest.raises(RuleError) as info:
            rules.load_rule_set(spec)
        assert str(info.value) == f"{spec}: rule file not found: {spec}"
    with pytest.raises(RegistryError, match="unknown rule set 'sub'"):
        rules.load_rule_set("sub")  # no separator, no .toml: a name, even with a folder of that name here


def test_rule_sets_with_one_name_collide_and_columns_are_named_after_it(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('name = "portrait"\n' + ROW, encoding="utf-8")
    with pytest.raises(RuleError) as info:
        rules.load_rule_sets(["street", "portrait", str(path)])
    assert str(info.value) == (f"two rule sets are named 'portrait' (portrait and {path}); their columns would "
                               "collide: rename one")
    loaded = rules.load_rule_sets(["street", str(path), "night"])
    assert [r.name for r in loaded] == ["street", "portrait", "night"]
    assert rules.load_rule_sets([]) == []
    assert rules.score_columns("x") == ("score_x", "grade_x", "reasons_x")
    assert rules.score_columns(loaded[1]) == ("score_portrait", "grade_portrait", "reasons_portrait")
