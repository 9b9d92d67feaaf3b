"""TOML rule sets: schema validation with locations, table/deduction semantics, missing regions, thresholds,
the six presets on constructed residual maps, and the scan-facing helpers (score_row, parse_fail_under)."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from exposure_cli import rules, stats
from exposure_cli.registry import RegistryError
from exposure_cli.rules import RuleError, load_rule_file, parse_rule_text, score_row
from exposure_cli.stats import Thresholds

SCAN = Thresholds()
H = W = 100


def box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def row_for(residual: np.ndarray, masks: dict[str, np.ndarray | None], thresholds: Thresholds = SCAN) -> dict:
    """A report row as the scan builds it: statistics of a residual map + region masks, plus file facts."""
    row = stats.image_stats(residual, masks, thresholds)
    row.update(path="photo.jpg", status="ok", error=None, width=W, height=H, exif_iso=200.0)
    return row


def write_rules(tmp_path: Path, text: str, name: str = "acme.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------- validation


def test_unknown_metric_error_names_file_field_line_and_suggests(tmp_path):
    path = write_rules(
        tmp_path,
        """
        name = "acme"

        [[rows]]
        score = 100
        when = "global.bad_pct < 2"

        [[rows]]
        score = 50
        when = "face.ovr_pct < 10"
        """,
    )
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    error = info.value
    assert error.file == str(path)
    assert error.field == "rows[1].when"
    assert error.line == 9
    assert "face.over_pct" in error.message
    assert str(error).startswith(f"{path}:9, rows[1].when")


@pytest.mark.parametrize(
    "body, field, message",
    [
        ('name = "x"\ndescripton = "y"\n[[rows]]\nscore = 1\nwhen = "true"\n', "descripton", "did you mean 'description'"),
        ('name = "x"\n[[rows]]\nscore = 1\nwhn = "true"\n', "rows[0].whn", "did you mean 'when'"),
        ('name = "x"\n[[rows]]\nscore = 1\n', "rows[0].when", "'when' is required"),
        ('name = "x"\n[[rows]]\nscore = 120\nwhen = "true"\n', "rows[0].score", "0 to 100"),
        ('name = "x"\n[[rows]]\nscore = 1\nwhen = "global.bad_pct"\n', "rows[0].when", "expected a condition"),
        ('name = "x"\n[[deductions]]\nwhen = "true"\npoints = "global.bad_pct > 2"\n', "deductions[0].points", "expected a number"),
        ('name = "x"\n[[deductions]]\nwhen = "true"\n', "deductions[0].points", "'points' is required"),
        ('name = "x"\n', "deductions", "neither"),
        ('name = "x"\n[[rows]]\nscore = 1\nwhen = "true"\n[[deductions]]\nwhen = "true"\npoints = 1\n', "rows", "both"),
        ('name = "bad name!"\n[[rows]]\nscore = 1\nwhen = "true"\n', "name", "letters, digits"),
        ('name = "x"\non_missing_region = "use_globl"\n[[rows]]\nscore = 1\nwhen = "true"\n', "on_missing_region", "use_global"),
        ('name = "x"\n[thresholds]\nover = 10\n[[rows]]\nscore = 1\nwhen = "true"\n', "thresholds.over", "not a percentage"),
        ('name = "x"\n[define]\nface = "1"\n[[rows]]\nscore = 1\nwhen = "true"\n', "define.face", "cannot be defined"),
        ('name = "x"\nstart = 90\n[[rows]]\nscore = 1\nwhen = "true"\n', "start", "deduction rule sets"),
    ],
)
def test_schema_errors(tmp_path, body, field, message):
    path = write_rules(tmp_path, body)
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    assert info.value.field == field
    assert message in info.value.message
    assert info.value.file == str(path)


def test_toml_syntax_error_has_a_line(tmp_path):
    path = write_rules(tmp_path, 'name = "x"\n[[rows]\nscore = 1\n')
    with pytest.raises(RuleError, match="not valid TOML") as info:
        load_rule_file(path)
    assert info.value.line == 2


def test_presets_and_registry():
    assert set(rules.PRESETS) <= set(rules.RULE_SETS.names())
    for name in rules.PRESETS:
        rule_set = rules.get_rule_set(name)
        assert rule_set.name == name  # file name and name key agree
        assert rule_set.description
    with pytest.raises(RegistryError, match="did you mean 'portrait'"):
        rules.load_rule_sets(["portrat"])


def test_two_rule_sets_with_one_name_are_an_error(tmp_path):
    path = write_rules(tmp_path, 'name = "portrait"\n[[rows]]\nscore = 1\nwhen = "true"\n')
    with pytest.raises(RuleError, match="columns would collide"):
        rules.load_rule_sets(["portrait", str(path)])


def test_parse_fail_under():
    assert rules.parse_fail_under("portrait=60") == ("portrait", 60.0)
    assert rules.parse_fail_under(" landscape-strict = 72.5") == ("landscape-strict", 72.5)
    for bad in ("portrait", "portrait=", "=60", "portrait=abc", "portrait=101"):
        with pytest.raises(RuleError):
            rules.parse_fail_under(bad)
    assert rules.below_threshold([10.0, math.nan, 70.0], 60).tolist() == [True, False, False]
    assert rules.below_threshold([10, None, 70], 60).tolist() == [True, False, False]  # None: unscored


# ------------------------------------------------------------------------------------------ semantics

VENDOR_A = """
name = "vendor-a"
[[deductions]]
when = "global.over_pct >= 20"
points = 10
"""
VENDOR_B = VENDOR_A.replace("vendor-a", "vendor-b").replace("points = 10", "points = 30")


def test_readme_example_vendor_a_and_b_deductions():
    residual = np.zeros((H, W), np.float32)
    residual[:23] = -0.5  # 23 % over-exposed
    row = row_for(residual, {})
    result = score_row([parse_rule_text(VENDOR_A), parse_rule_text(VENDOR_B)], row, SCAN)
    assert result["score_vendor-a"] == 90.0
    assert result["score_vendor-b"] == 70.0
    assert result["reasons_vendor-a"] == "global over-exposed area 23 % ≥ 20 % → −10"
    assert result["reasons_vendor-b"] == "global over-exposed area 23 % ≥ 20 % → −30"
    clean = score_row([parse_rule_text(VENDOR_A)], row_for(np.zeros((H, W), np.float32), {}), SCAN)
    assert clean["score_vendor-a"] == 100.0
    assert clean["reasons_vendor-a"].startswith("no deduction applies")


def test_deductions_accumulate_floor_and_expression_points():
    rule_set = parse_rule_text(
        """
        name = "d"
        floor = 15
        [[deductions]]
        when = "global.over_pct > 0"
        points = "global.over_pct * 2"
        [[deductions]]
        when = "global.bad_pct > 10"
        points = 40
        """.replace("        ", "")
    )
    residual = np.zeros((H, W), np.float32)
    residual[:5] = -0.5
    assert score_row([rule_set], row_for(residual, {}), SCAN)["score_d"] == 90.0
    residual[:30] = -0.5
    result = score_row([rule_set], row_for(residual, {}), SCAN)
    assert result["score_d"] == 15.0  # 100 − 60 − 40 = 0, floored at 15
    assert "→ −60" in result["reasons_d"] and "→ −40" in result["reasons_d"]


def test_first_matching_row_wins_and_otherwise():
    rule_set = parse_rule_text(
        'name = "t"\n[[rows]]\nscore = 90\nwhen = "global.bad_pct < 50"\nlabel = "fine"\n'
        '[[rows]]\nscore = 50\nwhen = "global.bad_pct < 80"\n'
        '[otherwise]\nscore = 5\nlabel = "hopeless"\n'
    )
    residual = np.zeros((H, W), np.float32)
    residual[:10] = 0.5  # 10 % bad: both rows hold, the first wins
    result = score_row([rule_set], row_for(residual, {}), SCAN)
    assert result["score_t"] == 90.0
    assert result["reasons_t"] == "global bad area 10 % < 50 % → 90 (fine)"
    residual[:] = 0.5
    result = score_row([rule_set], row_for(residual, {}), SCAN)
    assert (result["score_t"], result["reasons_t"]) == (5.0, "no row matched → 5 (hopeless)")


MISSING = """
name = "m"
on_missing_region = "{policy}"
[[rows]]
score = 100
when = "face.bad_pct < 5"
[[rows]]
score = 60
when = "global.bad_pct < 50"
[otherwise]
score = 10
"""


@pytest.mark.parametrize(
    "policy, score, reason",
    [
        ("skip", 60.0, "rows[0] skipped: no face found; global bad area 30 % < 50 % → 60"),
        ("use_global", 60.0, "global bad area 30 % < 50 % → 60"),
        ("fail", 0.0, 'rows[0] needs face, which was not found (on_missing_region = "fail") → 0'),
    ],
)
def test_missing_region_policies(policy, score, reason):
    rule_set = parse_rule_text(MISSING.format(policy=policy))
    residual = np.zeros((H, W), np.float32)
    residual[:30] = 0.5
    result = score_row([rule_set], row_for(residual, {"face": None}), SCAN)
    assert result["score_m"] == score
    assert result["reasons_m"] == reason
    # with a well-exposed face present, the policy does not matter
    present = score_row([rule_set], row_for(residual, {"face": box(50, 70, 40, 60)}), SCAN)
    assert present["score_m"] == 100.0
    assert present["reasons_m"] == "face bad area 0 % < 5 % → 100"


def test_use_region_fallback_says_so_in_the_reason():
    rule_set = parse_rule_text(MISSING.format(policy="use_subject").replace("global.bad_pct < 50", "false"))
    residual = np.zeros((H, W), np.float32)
    residual[:30] = 0.5
    result = score_row([rule_set], row_for(residual, {"subject": box(50, 90, 10, 90)}), SCAN)
    assert result["score_m"] == 100.0
    assert "(no face found: subject used instead)" in result["reasons_m"]


def test_use_region_reading_its_own_region_reads_it_as_missing_not_global():
    """use_face on "face.bad_pct < 5" without a face: face's own metrics stay missing (the comparison is
    false, the row is not skipped), not global's, which would pass on this clean photo (docs/RULES.md)."""
    rule_set = parse_rule_text(MISSING.format(policy="use_face"))
    residual = np.zeros((H, W), np.float32)
    residual[:2] = 0.5  # global bad area 2 %: "< 5" would hold if face were read as global
    result = score_row([rule_set], row_for(residual, {"face": None}), SCAN)
    assert (result["score_m"], result["reasons_m"]) == (60.0, "global bad area 2 % < 50 % → 60")
    # another region read under use_face while the face is absent does fall back to global
    other = parse_rule_text(MISSING.format(policy="use_face").replace("face.bad_pct", "sky.bad_pct"))
    result = score_row([other], row_for(residual, {"face": None, "sky": None}), SCAN)
    assert (result["score_m"], result["reasons_m"]) == (
        100.0, "sky bad area 2 % < 5 % (no sky, face found: global used instead) → 100")


def test_exists_and_image_facts():
    rule_set = parse_rule_text(
        'name = "f"\n[[rows]]\nscore = 80\nwhen = "not exists(face) and image.megapixels < 1 and exif.iso <= 200"\n'
        '[otherwise]\nscore = 20\n'
    )
    result = score_row([rule_set], row_for(np.zeros((H, W), np.float32), {}), SCAN)
    assert result["score_f"] == 80.0
    assert result["reasons_f"] == "no face found and image size 0.01 MP < 1 MP and ISO 200 ≤ 200 → 80"


def test_error_rows_are_not_scored():
    rule_sets = rules.load_rule_sets(list(rules.PRESETS))
    result = score_row(rule_sets, {"path": "broken.jpg", "status": "error", "error": "truncated JPEG"}, SCAN)
    for rule_set in rule_sets:
        assert math.isnan(result[f"score_{rule_set.name}"])
        assert result[f"grade_{rule_set.name}"] == ""
        assert "truncated JPEG" in result[f"reasons_{rule_set.name}"]


def test_rule_thresholds_are_answered_from_histograms():
    residual = np.zeros((H, W), np.float32)
    residual[:30] = -0.15  # over-exposed at the scan's 0.1, not at 0.2
    residual[30:40] = -0.25
    rule_set = parse_rule_text(
        'name = "p"\n[thresholds]\nover = 0.2\n[[deductions]]\nwhen = "global.over_pct > 0"\npoints = "global.over_pct"\n'
    )
    scan_row = row_for(residual, {})
    assert scan_row["over_pct"] == pytest.approx(40.0)
    result = score_row([rule_set], scan_row, SCAN)
    exact = stats.image_stats(residual, {}, Thresholds(over=0.2))["over_pct"]
    assert exact == pytest.approx(10.0)
    assert result["score_p"] == pytest.approx(100 - exact)


# ------------------------------------------------------------------------------------------- presets
# Each case builds a residual map and region masks so that one specific row of the preset's table fires.

PERSON = box(20, 100, 30, 70)  # 3200 px; face on top of it
FACE = box(20, 40, 40, 60)
PORTRAIT_MASKS = {"face": FACE, "person": PERSON, "subject": PERSON, "background": ~PERSON}
PRODUCT = box(30, 70, 30, 70)  # 1600 px in the middle
SUBJECT_MASKS = {"subject": PRODUCT, "background": ~PRODUCT}


def _paint(*parts: tuple[np.ndarray, float]) -> np.ndarray:
    residual = np.zeros((H, W), np.float32)
    for mask, value in parts:
        residual[mask] = value
    return residual


PRESET_CASES = [
    # portrait
    ("portrait", _paint(), PORTRAIT_MASKS, 100, "face/body well exposed and global bad area < 10 %"),
    ("portrait", _paint((box(0, 12, 0, 100), -0.5)), PORTRAIT_MASKS, 90, "background bad area up to 20 %"),
    ("portrait", _paint((box(94, 100, 30, 70), 0.2)), PORTRAIT_MASKS, 80, "slightly bright or dark"),
    ("portrait", _paint((box(88, 100, 30, 70), 0.2)), PORTRAIT_MASKS, 60, "10 % of face/body bad"),
    ("portrait", _paint((~PERSON, -0.5)), PORTRAIT_MASKS, 60, "global bad area reaches 40 %"),
    ("portrait", _paint((box(80, 100, 30, 70), 0.2)), PORTRAIT_MASKS, 40, "20 % of face/body bad"),
    ("portrait", _paint((box(60, 100, 30, 70), 0.2)), PORTRAIT_MASKS, 20, "more than 30 % of face/body bad"),
    ("portrait", _paint((PERSON, -0.8)), PORTRAIT_MASKS, 0, "subject invisible or washed out"),
    # landscape-strict: only the global bad area counts
    ("landscape-strict", _paint((box(0, 1, 0, 100), 0.5)), {}, 100, "global bad area < 2 %"),
    ("landscape-strict", _paint((box(0, 3, 0, 100), 0.5)), {}, 80, "global bad area < 5 %"),
    ("landscape-strict", _paint((box(0, 10, 0, 100), -0.5)), {}, 60, "about 10 % bad"),
    ("landscape-strict", _paint((box(0, 20, 0, 100), 0.5)), {}, 40, "about 20 % bad"),
    ("landscape-strict", _paint((box(0, 30, 0, 100), 0.5)), {}, 20, "about 30 % bad"),
    ("landscape-strict", _paint((box(0, 45, 0, 100), 0.2)), {}, 10, "more than 40 % bad"),
    ("landscape-strict", _paint((box(0, 60, 0, 100), -0.9)), {}, 0, "mostly clipped"),
    # street: the subject must read; dark backgrounds are fine, blown ones are not
    ("street", _paint((box(0, 21, 0, 100), 0.5)), SUBJECT_MASKS, 100, "under-exposed background up to 30 % is fine"),
    ("street", _paint((box(30, 33, 30, 70), 0.5)), SUBJECT_MASKS, 80, "subject slightly bright or dark"),
    ("street", _paint((box(30, 35, 30, 70), 0.5), (box(0, 30, 0, 100), 0.5)), SUBJECT_MASKS, 60, "minor clipping"),
    ("street", _paint((box(0, 25, 0, 100), -0.5)), SUBJECT_MASKS, 40, "subject undermined"),
    ("street", _paint((box(30, 58, 30, 70), 0.2)), SUBJECT_MASKS, 20, "subject lost"),
    ("street", _paint((np.ones((H, W), bool), 0.9)), SUBJECT_MASKS, 0, "nothing of the scene survives"),
    # night: darkness accepted, glare punished, an empty frame is worth nothing
    ("night", _paint((np.ones((H, W), bool), 0.9)), {}, 0, "all black or all white"),
    ("night", _paint((box(0, 30, 0, 100), 0.5), (box(30, 32, 0, 100), -0.5)), {}, 100, "under-exposure up to 40 % accepted"),
    ("night", _paint((box(0, 7, 0, 100), -0.5)), {}, 80, "minor clipping around light sources"),
    ("night", _paint((box(0, 15, 0, 100), -0.5)), {}, 60, "night brightened into day"),
    ("night", _paint((box(0, 30, 0, 100), -0.5)), {}, 40, "over-exposed area > 20 %"),
    ("night", _paint((box(0, 60, 0, 100), -0.2)), {}, 20, "massive blow-out"),
    # ecommerce: blown white background wanted, the product evenly lit
    ("ecommerce", _paint((box(0, 30, 0, 100), -0.6)), SUBJECT_MASKS, 100, "product well and evenly exposed"),
    ("ecommerce", _paint((box(30, 31, 30, 70), 0.2), (box(31, 32, 30, 50), 0.2)), SUBJECT_MASKS, 80, "minor shadows"),
    ("ecommerce", _paint((box(30, 33, 30, 70), -0.2)), SUBJECT_MASKS, 60, "10 % of product"),
    ("ecommerce", _paint((box(30, 36, 30, 70), -0.2)), SUBJECT_MASKS, 40, "20 % of product over-exposed"),
    ("ecommerce", _paint((box(30, 42, 30, 70), 0.2)), SUBJECT_MASKS, 20, "20 % of product under-exposed"),
    ("ecommerce", _paint((PRODUCT, -0.9)), SUBJECT_MASKS, 0, "product unrecognisable"),
]


@pytest.mark.parametrize(
    "preset, residual, masks, score, label",
    PRESET_CASES,
    ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(PRESET_CASES)],
)
def test_preset_rows_fire_on_constructed_maps(preset, residual, masks, score, label):
    rule_set = rules.get_rule_set(preset)
    result = score_row([rule_set], row_for(residual, masks), SCAN)
    assert result[f"score_{preset}"] == score, result[f"reasons_{preset}"]
    assert label in result[f"reasons_{preset}"]
    assert result[f"grade_{preset}"] == rule_set.grade(score)


def test_every_preset_row_is_covered_by_a_case():
    for preset in ("portrait", "landscape-strict", "street", "night", "ecommerce"):
        rule_set = rules.get_rule_set(preset)
        covered = {case[3] for case in PRESET_CASES if case[0] == preset}
        expected = {c.score for c in rule_set.conditions} | {rule_set.otherwise_score}
        assert covered == expected, preset


def _lit_product(spread: float) -> np.ndarray:
    """A product lit from one side: r runs from −spread/2 to +spread/2 across it, never past a pixel
    threshold (so its bad area is 0 %); 30 % of the frame is blown white background."""
    residual = _paint((box(0, 30, 0, 100), -0.6))
    residual[30:70, 30:70] = np.linspace(-spread / 2, spread / 2, 40, dtype=np.float32)[None, :]
    return residual


def test_ecommerce_product_even_decides_between_evenly_lit_and_shadowed_products(tmp_path):
    """`product_even` must be able to change a score. At the scan's pixel thresholds (0.1 each side) a
    product with bad area < 2 % already has p95 − p05 < 0.2, so the first version of the define
    (`< 0.25`) was always true where it was asked and never changed a score: the same preset with
    `product_even = "true"` scored every photo alike. Now products lit unevenly within the thresholds drop
    from 100 to 80."""
    ecommerce = rules.get_rule_set("ecommerce")
    source = (Path(rules.__file__).parent / "presets" / "ecommerce.toml").read_text(encoding="utf-8")
    always_even = re.sub(r'(?m)^product_even = ".*"$', 'product_even = "true"', source)
    assert always_even != source
    always_even = rules.load_rule_sets([str(write_rules(tmp_path, always_even.replace(
        'name = "ecommerce"', 'name = "always_even"'), "always_even.toml"))])[0]
    scores, scores_if_even = {}, {}
    for spread in (0.0, 0.04, 0.08, 0.09, 0.11, 0.12, 0.16, 0.19):
        row = row_for(_lit_product(spread), SUBJECT_MASKS)
        assert row["subject_bad_pct"] == 0.0 and row["over_pct"] == pytest.approx(30.0)
        result = score_row([ecommerce, always_even], row, SCAN)
        scores[spread] = result["score_ecommerce"]
        scores_if_even[spread] = result["score_always_even"]
        if spread <= 0.09:
            assert "product_even: subject.p95_residual - subject.p05_residual" in result["reasons_ecommerce"]
    assert scores == {0.0: 100, 0.04: 100, 0.08: 100, 0.09: 100, 0.11: 80, 0.12: 80, 0.16: 80, 0.19: 80}
    assert set(scores_if_even.values()) == {100}  # what the preset scored before: the define never bit


def test_default_preset_is_continuous_and_explained():
    rule_set = rules.get_rule_set("default")
    assert score_row([rule_set], row_for(_paint(), {}), SCAN)["score_default"] == 100.0
    residual = _paint((box(0, 20, 0, 100), -0.2))  # 20 % over, not severe; mean shift 0.04 (< 0.05)
    result = score_row([rule_set], row_for(residual, {}), SCAN)
    assert result["score_default"] == pytest.approx(100 - 20 * 0.8)
    assert result["grade_default"] == "B"
    assert result["reasons_default"] == "global bad area 20 % ≥ 2 % → −16 (badly exposed area)"
    worse = score_row([rule_set], row_for(_paint((np.ones((H, W), bool), -0.9)), {}), SCAN)
    assert worse["score_default"] == 0.0


def test_explain_lists_every_condition_with_values():
    rule_set = rules.get_rule_set("landscape-strict")
    frame = rules.MetricFrame.from_rows([row_for(_paint((box(0, 20, 0, 100), 0.5)), {})], SCAN)
    lines = rule_set.explain(frame, 0)
    assert len(lines) == len(rule_set.conditions) + 1
    decisive = [line for line in lines if line.get("decisive")]
    assert [line["effect"] for line in decisive] == ["40"]
    assert lines[0]["details"] == ["✗ global bad area 20 % < 2 %"]
    assert lines[-1]["effect"] == "40 (D)"


# -------------------------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TOML_PIECES = st.sampled_from(
    ['name = "x"\n', "[[rows]]\n", "[[deductions]]\n", "score = 50\n", "points = 3\n", 'points = "1 +"\n',
     'when = "global.bad_pct < 5"\n', 'when = "face.bda < 1"\n', "when = 3\n", "[thresholds]\n", "over = 2\n",
     "over = 0.2\n", "[define]\n", 'a = "a"\n', 'b = "global.over_pct"\n', "[otherwise]\n", "score = 'x'\n",
     "[grades]\n", "A = 90\n", 'on_missing_region = "use_sky"\n', "= =\n", "[[\n", '"\\u0000"\n', "start = 200\n"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TOML_PIECES, max_size=14).map("".join))
def test_random_rule_files_load_or_raise_rule_error_only(text):
    try:
        rule_set = parse_rule_text(text)
    except RuleError:
        return
    frame = rules.MetricFrame.from_rows([row_for(np.zeros((10, 10), np.float32), {})], SCAN)
    result = rules.score_frame([rule_set], frame)
    score = result[f"score_{rule_set.name}"][0]
    assert 0.0 <= score <= 100.0


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 1))
def test_more_bad_area_never_raises_a_global_preset_score(bad, extra, severe_share):
    def row(bad_pct: float) -> dict:
        values = {"bad_pct": bad_pct, "over_pct": bad_pct / 2, "under_pct": bad_pct / 2,
                  "severe_bad_pct": bad_pct * severe_share, "severe_over_pct": bad_pct * severe_share / 2,
                  "severe_under_pct": bad_pct * severe_share / 2, "mean_residual": 0.0, "area_pct": 100.0}
        return {**values, "path": "p.jpg", "status": "ok"}

    worse = min(100.0, bad + extra)
    for preset in ("landscape-strict", "default"):
        rule_set = rules.get_rule_set(preset)
        low = score_row([rule_set], row(bad), SCAN)[f"score_{preset}"]
        high = score_row([rule_set], row(worse), SCAN)[f"score_{preset}"]
        assert high <= low + 1e-9, (preset, bad, worse)


def test_absent_fallback_region_falls_back_to_global_and_says_so():
    rule_set = parse_rule_text(MISSING.format(policy="use_subject").replace("global.bad_pct < 50", "false"))
    residual = np.zeros((H, W), np.float32)
    residual[:3] = 0.5  # 3 % bad overall
    result = score_row([rule_set], row_for(residual, {}), SCAN)
    assert result["score_m"] == 100.0
    assert result["reasons_m"] == "face bad area 3 % < 5 % (no face, subject found: global used instead) → 100"


@pytest.mark.parametrize("reverse", [False, True])
def test_definition_bombs_and_deep_chains_are_rejected_quickly(reverse):
    """Rejected before any expansion: an expanded d59 has 2**59 nodes, which no machine finishes. The bound
    below only tells "stopped early" from "hung" (it is 15× the slowest time seen under load); the time
    itself is measured by ``benchmarks/bench_rules.py bombs``, not asserted here."""
    import time

    doubling = [f'd{i} = "d{i - 1} + d{i - 1}"' for i in range(1, 60)]
    chain = [f'c{i} = "c{i - 1} + 1"' for i in range(1, 3000)]
    for body, last in ((doubling, "d59"), (chain, "c2999")):
        lines = ["d0 = \"global.over_pct\"", "c0 = \"global.over_pct\""] + body
        if reverse:
            lines = lines[::-1]
        text = "\n".join(['name = "bomb"', "[define]", *lines, "[[rows]]", "score = 1", f'when = "{last} > 1"'])
        started = time.perf_counter()
        with pytest.raises(RuleError, match="too large|too deeply"):
            parse_rule_text(text)
        assert time.perf_counter() - started < 30


# ----------------------------------------------------------------------- explain, line by line, any photo

EXPLAIN_TABLE = '''
name = "ex"
on_missing_region = "skip"
[define]
calm = "global.over_pct < 5 and not (global.under_pct >= 5)"
[[rows]]
score = 90
label = "calm"
when = "calm or subject.bad_pct < 1"
[[rows]]
score = 50
when = "subject.over_pct <= 20"
on_missing_region = "fail"
[otherwise]
score = 10
label = "rest"
'''

EXPLAIN_DEDUCTIONS = '''
name = "dd"
start = 100
[[deductions]]
label = "over"
when = "global.over_pct >= 5"
points = "global.over_pct * 2"
[[deductions]]
when = "not exists(face)"
points = 3
'''


def _explain_frame():
    rows = [row_for(_paint(), {}),  # no subject
            row_for(_paint((box(0, 10, 0, 100), -0.5)), SUBJECT_MASKS),  # 10 % over, outside the product
            row_for(_paint((box(0, 30, 0, 100), 0.5), (box(30, 40, 30, 70), -0.5)), SUBJECT_MASKS)]  # 4 % over
    return rules.MetricFrame.from_rows(rows, SCAN)


def _line(rule, condition, fired, decisive, effect, details):
    return {"rule": rule, "condition": condition, "fired": fired, "decisive": decisive, "effect": effect,
            "details": details}


def _result(effect, reason):
    return {"rule": "result", "condition": "", "fired": True, "effect": effect, "details": [reason]}


def test_explain_a_table_for_each_photo_with_defines_not_or_and_missing_regions():
    rule_set = parse_rule_text(EXPLAIN_TABLE)
    frame = _explain_frame()
    first, second = "calm or subject.bad_pct < 1", "subject.over_pct <= 20"
    assert rule_set.explain(frame, 0) == [
        _line("rows[0] (calm)", first, False, False, "90",
              ["✓ global over-exposed area 0 % < 5 %", "✗ global under-exposed area 0 % ≥ 5 %",
               "✗ subject bad area n/a < 1 %", "no subject found: on_missing_region = 'skip'"]),
        _line("rows[1]", second, False, True, "50",
              ["✗ subject over-exposed area n/a ≤ 20 %", "no subject found: on_missing_region = 'fail'"]),
        _result("0 (F)", 'rows[0] skipped: no subject found; rows[1] needs subject, which was not found '
                         '(on_missing_region = "fail") → 0'),
    ]
    assert rule_set.explain(frame, 1) == [
        _line("rows[0] (calm)", first, True, True, "90",
              ["✗ global over-exposed area 10 % < 5 %", "✗ global under-exposed area 0 % ≥ 5 %",
               "✓ subject bad area 0 % < 1 %"]),
        _line("rows[1]", second, True, False, "50", ["✓ subject over-exposed area 0 % ≤ 20 %"]),
        _result("90 (A)", "subject bad area 0 % < 1 % → 90 (calm)"),
    ]
    assert rule_set.explain(frame, 2) == [
        _line("rows[0] (calm)", first, False, False, "90",
              ["✓ global over-exposed area 4 % < 5 %", "✓ global under-exposed area 30 % ≥ 5 %",
               "✗ subject bad area 25 % < 1 %"]),
        _line("rows[1]", second, False, False, "50", ["✗ subject over-exposed area 25 % ≤ 20 %"]),
        _result("10 (F)", "no row matched → 10 (rest)"),
    ]


def test_explain_deductions_for_each_photo():
    rule_set = parse_rule_text(EXPLAIN_DEDUCTIONS)
    frame = _explain_frame()
    no_face = _line("deductions[1]", "not exists(face)", True, True, "−3", ["✗ exists(face): not found"])
    assert rule_set.explain(frame, 0) == [
        _line("deductions[0] (over)", "global.over_pct >= 5", False, False, "−0",
              ["✗ global over-exposed area 0 % ≥ 5 %"]), no_face, _result("97 (A)", "no face found → −3")]
    assert rule_set.explain(frame, 1) == [
        _line("deductions[0] (over)", "global.over_pct >= 5", True, True, "−20",
              ["✓ global over-exposed area 10 % ≥ 5 %"]), no_face,
        _result("77 (B)", "global over-exposed area 10 % ≥ 5 % → −20 (over); no face found → −3")]
    assert rule_set.explain(frame, 2) == [
        _line("deductions[0] (over)", "global.over_pct >= 5", False, False, "−8",
              ["✗ global over-exposed area 4 % ≥ 5 %"]), no_face, _result("97 (A)", "no face found → −3")]


def test_deductions_that_need_a_missing_region_fail_the_photo():
    rule_set = parse_rule_text('''
name = "needface"
on_missing_region = "fail"
[[deductions]]
label = "dark face"
when = "face.under_pct > 5"
points = 20
[[deductions]]
when = "global.over_pct > 5"
points = 7
''')
    no_face = score_row([rule_set], row_for(_paint((box(0, 10, 0, 100), -0.5)), {}), SCAN)
    assert no_face == {"score_needface": 0.0, "grade_needface": "F", "reasons_needface":
                       'deductions[0] needs face, which was not found (on_missing_region = "fail") → 0; '
                       "global over-exposed area 10 % > 5 % → −7"}
    dark_face = score_row([rule_set], row_for(_paint((FACE, 0.5), (box(0, 10, 0, 100), -0.5)), PORTRAIT_MASKS), SCAN)
    assert dark_face["score_needface"] == 73.0
    assert dark_face["reasons_needface"] == ("face under-exposed area 100 % > 5 % → −20 (dark face); "
                                             "global over-exposed area 10 % > 5 % → −7")


# --- issue 17: deductions, written from the surviving mutants of `tools/mutation.py rules` (docs/TESTING.md)


def _deduct(text: str, residual: np.ndarray, masks: dict) -> tuple[float, str]:
    result = score_row([parse_rule_text(text)], row_for(residual, masks), SCAN)
    return result["score_b"], result["reasons_b"]


def test_deduction_signs_bonuses_and_the_ceiling_of_100():
    # a negative deduction is a bonus: shown with "+", and the score never passes 100
    assert _deduct('name = "b"\n[[deductions]]\nwhen = "true"\npoints = -5\n', _paint(), {}) == (100.0, "always → +5")
    text = ('name = "b"\nstart = 90\n[[deductions]]\nwhen = "true"\npoints = -5\n'
            '[[deductions]]\nwhen = "true"\npoints = "global.over_pct"\n'  # fires with 0 points: "−0"
            '[[deductions]]\nwhen = "true"\npoints = 0.5\n')
    assert _deduct(text, _paint(), {}) == (94.5, "always → +5; always → −0; always → −0.5")
    frame = rules.MetricFrame.from_rows([row_for(_paint(), {})], SCAN)
    assert [line["effect"] for line in parse_rule_text(text).explain(frame, 0)] == ["+5", "−0", "−0.5", "94.5 (A)"]
    # scores are rounded to 1e-6: a deduction of 4e-7 leaves 100
    assert _deduct('name = "b"\n[[deductions]]\nwhen = "true"\npoints = 0.0000004\n', _paint(), {})[0] == 100.0
    # points that are not a number (0 ÷ 0) deduct nothing
    score, reason = _deduct('name = "b"\n[[deductions]]\nwhen = "true"\npoints = "global.over_pct / global.under_pct"\n',
                            _paint(), {})
    assert score == 100.0 and "n/a" in reason


def test_deductions_under_each_missing_region_policy():
    over10 = _paint((box(0, 10, 0, 100), -0.5))
    # "fail": a present face whose condition does not hold deducts nothing; the other deduction still counts
    fail = ('name = "b"\non_missing_region = "fail"\n[[deductions]]\nwhen = "face.bad_pct > 5"\npoints = 20\n'
            '[[deductions]]\nwhen = "global.over_pct > 5"\npoints = 7\n')
    assert _deduct(fail, over10, PORTRAIT_MASKS) == (93.0, "global over-exposed area 10 % > 5 % → −7")
    # "fail" with two regions missing names both
    two = 'name = "b"\non_missing_region = "fail"\n[[deductions]]\nwhen = "face.bad_pct > 5 or sky.bad_pct > 5"\npoints = 10\n'
    assert _deduct(two, _paint(), {}) == (
        0.0, 'deductions[0] needs face, sky, which was not found (on_missing_region = "fail") → 0')
    # "skip" (the default): a condition that holds on a missing face (not (n/a < 5)) is skipped, not deducted
    skip = 'name = "b"\n[[deductions]]\nwhen = "not (face.bad_pct < 5)"\npoints = 10\n'
    assert _deduct(skip, _paint(), {}) == (100.0, "deductions[0] skipped: no face found; no deduction applies → 100")
    assert _deduct(skip.replace("face.bad_pct < 5", "face.bad_pct < 5 and sky.bad_pct < 5"), _paint(), {}) == (
        100.0, "deductions[0] skipped: no face, sky found; no deduction applies → 100")
    # "use_global": the missing face is read as the whole photo; nothing is skipped
    use = 'name = "b"\non_missing_region = "use_global"\n[[deductions]]\nwhen = "face.bad_pct > 5"\npoints = 10\n'
    assert _deduct(use, _paint(), {}) == (100.0, "no deduction applies → 100")
    assert _deduct(use, over10, {})[0] == 90.0


def test_explain_follows_defines_through_not_or_and_other_defines():
    rule_set = parse_rule_text('''
name = "nest"
[define]
calm = "global.over_pct < 5"
quiet = "calm and global.under_pct < 5"
[[rows]]
score = 20
when = "not quiet"
[[rows]]
score = 90
when = "global.bad_pct > 50 or quiet"
[otherwise]
score = 10
''')
    frame = rules.MetricFrame.from_rows([row_for(_paint((box(0, 10, 0, 100), -0.5)), {})], SCAN)
    quiet = ["✗ global over-exposed area 10 % < 5 %", "✓ global under-exposed area 0 % < 5 %"]
    assert rule_set.explain(frame, 0) == [
        _line("rows[0]", "not quiet", True, True, "20", quiet),
        _line("rows[1]", "global.bad_pct > 50 or quiet", False, False, "90", ["✗ global bad area 10 % > 50 %", *quiet]),
        _result("20 (F)", "global over-exposed area 10 % ≥ 5 % → 20"),
    ]


LEAVES = '''
name = "lf"
[[rows]]
score = 90
when = "exists(face) and known(face.over_pct) and 5 > face.over_pct"
[[rows]]
score = 50
when = "not known(global.over_pct - face.over_pct) or global.over_pct > global.under_pct"
on_missing_region = "use_global"
[[rows]]
score = 40
when = "true"
[[rows]]
score = 30
when = "false"
'''


def test_reasons_and_explain_of_exists_known_literals_and_a_number_on_the_left():
    """Three photos scored in one frame (the reasons index every photo's values): a face, no face with 10 %
    over-exposed, no face with 10 % under-exposed."""
    over, under = _paint((box(0, 10, 0, 100), -0.5)), _paint((box(0, 10, 0, 100), 0.5))
    frame = rules.MetricFrame.from_rows([row_for(over, PORTRAIT_MASKS), row_for(over, {}), row_for(under, {})], SCAN)
    rule_set = parse_rule_text(LEAVES)
    result = rule_set.score(frame)
    assert result.scores.tolist() == [90.0, 50.0, 40.0]
    assert result.reasons == [
        "face found and face over-exposed area known (0 %) and 5 % > face over-exposed area 0 % → 90",
        "rows[0] skipped: no face found; global over-exposed area 10 % > global under-exposed area 0 % "
        "(no face found: global used instead) → 50",
        "rows[0] skipped: no face found; always → 40",
    ]
    first = rule_set.explain(frame, 0)
    assert [line["details"] for line in first[:4]] == [
        ["✓ exists(face): found", "✓ known(face.over_pct): 0 %", "✓ 5 % > face over-exposed area 0 %"],
        ["✓ known(global.over_pct - face.over_pct): 10 %", "✓ global over-exposed area 10 % > global under-exposed area 0 %"],
        ["✓ true"],
        ["✗ false"],
    ]
    assert rule_set.explain(frame, 2)[1]["details"] == [
        "✓ known(global.over_pct - face.over_pct): 0 %", "✗ global over-exposed area 0 % > global under-exposed area 10 %",
        "no face found: on_missing_region = 'use_global'"]
    # known() of a metric and of an expression, true and false, in deduction reasons
    known = parse_rule_text('name = "kn"\n[[deductions]]\nwhen = "known(global.over_pct - global.under_pct)"\npoints = 1\n'
                            '[[deductions]]\nwhen = "not known(global.ev_correction)"\npoints = 2\n')
    assert known.score(frame).reasons[0] == (
        "global.over_pct - global.under_pct known (10 %) → −1; "
        "global stops of correction (positive: brighten by that many stops) unknown → −2")


def test_table_reasons_name_every_missing_region_and_every_skipped_row_of_each_photo():
    text = '''
name = "miss"
[[rows]]
score = 95
when = "face.bad_pct < 1"
[[rows]]
score = 90
when = "face.bad_pct < 5 and sky.bad_pct < 5"
[[rows]]
score = 80
when = "subject.bad_pct < 5 and background.bad_pct < 5"
on_missing_region = "fail"
[otherwise]
score = 10
'''
    frame = rules.MetricFrame.from_rows([row_for(_paint(), {"face": FACE}), row_for(_paint(), {})], SCAN)
    rule_set = parse_rule_text(text)
    result = rule_set.score(frame)
    assert result.scores.tolist() == [95.0, 0.0]
    assert result.reasons == [
        "face bad area 0 % < 1 % → 95",
        "rows[0] skipped: no face found; rows[1] skipped: no face, sky found; rows[2] needs subject, background, "
        'which was not found (on_missing_region = "fail") → 0',
    ]


def test_a_fallback_policy_leaves_image_facts_alone():
    rule_set = parse_rule_text('name = "im"\non_missing_region = "use_subject"\n[[rows]]\nscore = 70\n'
                               'when = "image.megapixels < 1 and face.bad_pct < 5"\n')
    result = score_row([rule_set], row_for(_paint(), {"subject": PRODUCT}), SCAN)
    assert result["score_im"] == 70.0
    assert result["reasons_im"] == ("image size 0.01 MP < 1 MP and face bad area 0 % < 5 % "
                                    "(no face found: subject used instead) → 70")
