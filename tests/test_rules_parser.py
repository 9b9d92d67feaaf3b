"""The rule language's front end, exactly: the tokens and trees the parser builds (with positions), every
error's whole text and column, the type checker's messages, the expansion limits, the names an expression
reads, the canonical text and the number format.

test_rules_expr.py checks what expressions evaluate to; this file pins what the parser and checker say.
``tools/mutation.py rules-parser`` runs both against mutants of the tokenizer, parser and checker.
"""

from __future__ import annotations

import math
import pickle

import pytest

from exposure_cli.rules import expr
from exposure_cli.rules.expr import (BOOL, NUM, Binary, Bool, Call, Compare, Name, Number, RuleError, Token,
                                     Unary)
from exposure_cli.rules.metrics import metric_types
from exposure_cli.stats import REGIONS

NAMES = expr.Names(metrics=metric_types(), defines={}, regions=REGIONS)


def error(text: str, names: expr.Names | None = NAMES, expected: str | None = None) -> RuleError:
    with pytest.raises(RuleError) as info:
        node = expr.parse(text)
        if names is not None:
            expr.check(node, names, expected=expected)
    return info.value


# ------------------------------------------------------------------------------------------- RuleError


def test_rule_error_text_names_whatever_is_known():
    assert str(RuleError("bad")) == "bad"
    assert str(RuleError("bad", file="r.toml", line=3, field="rows[0].when", column=7)) == (
        "r.toml:3, rows[0].when, column 7: bad")
    assert str(RuleError("bad", file="r.toml")) == "r.toml: bad"
    assert str(RuleError("bad", line=4)) == "line 4: bad"
    assert str(RuleError("bad", line=4, field="name")) == "line 4, name: bad"
    assert str(RuleError("bad", column=2)) == "column 2: bad"
    assert str(RuleError("bad", field="f")) == "f: bad"
    e = RuleError("bad", file="a", field="b", line=5, column=6)
    assert (e.message, e.file, e.field, e.line, e.column) == ("bad", "a", "b", 5, 6)
    assert e.args == ("a:5, b, column 6: bad",)


def test_located_fills_in_only_what_was_unknown():
    bare = RuleError("bad", column=3)
    there = bare.located(file="r.toml", field="rows[1].when", line=9)
    assert (there.message, there.file, there.field, there.line, there.column) == ("bad", "r.toml", "rows[1].when", 9, 3)
    assert str(there) == "r.toml:9, rows[1].when, column 3: bad"
    known = RuleError("bad", file="a", field="b", line=1)
    again = known.located(file="x", field="y", line=2)
    assert (again.file, again.field, again.line, again.column) == ("a", "b", 1, None)
    assert bare.located().column == 3 and bare.located().file is None


def test_rule_errors_survive_pickling_with_every_attribute():
    e = RuleError("bad", file="r.toml", field="rows[0].when", line=3, column=7)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is RuleError
    assert (back.message, back.file, back.field, back.line, back.column) == ("bad", "r.toml", "rows[0].when", 3, 7)
    assert str(back) == str(e)


# ---------------------------------------------------------------------------------------------- tokens


def test_tokens_with_kinds_texts_and_positions():
    assert expr.tokenize(" a.b>=1.5e3%\t(") == [
        Token("name", "a", 1), Token("op", ".", 2), Token("name", "b", 3), Token("op", ">=", 4),
        Token("num", "1.5e3", 6), Token("op", "%", 11), Token("op", "(", 13), Token("end", "", 14)]
    assert [t.text for t in expr.tokenize("1. .5 2E-2 7 != <= == < > , - * / +")] == [
        "1.", ".5", "2E-2", "7", "!=", "<=", "==", "<", ">", ",", "-", "*", "/", "+", ""]
    assert expr.tokenize("") == [Token("end", "", 0)]


@pytest.mark.parametrize("text, message", [
    ("a = 1", "column 3: unexpected character '=' (compare with '==')"),
    ("a & b", "column 3: unexpected character '&' (use 'and' / 'or')"),
    ("a || b", "column 3: unexpected character '|' (use 'and' / 'or')"),
    ("!a", "column 1: unexpected character '!' (use 'not')"),
    ("a ; b", "column 3: unexpected character ';'"),
    ("١ > 0", "column 1: unexpected character '١'"),
])
def test_characters_outside_the_language(text, message):
    assert str(error(text, None)) == message


def test_length_and_token_limits():
    assert str(error(5, None)) == "expected an expression string, got int"
    longest = "x" * expr.MAX_EXPRESSION_LENGTH
    assert expr.parse(longest) == Name(longest, 0)
    assert str(error("1" * (expr.MAX_EXPRESSION_LENGTH + 1), None)) == (
        f"expression is {expr.MAX_EXPRESSION_LENGTH + 1} characters long; at most {expr.MAX_EXPRESSION_LENGTH} allowed")
    assert len(expr.tokenize("1+" * 127 + "1")) == expr.MAX_TOKENS  # 255 tokens and the end
    assert len(expr.tokenize("1+" * 128)) == expr.MAX_TOKENS + 1  # 256 tokens and the end
    too_many = "1+" * 128 + "1"  # 257 tokens: the last one, at offset 256, is one too many
    assert str(error(too_many, None)) == (
        f"column 257: expression has more than {expr.MAX_TOKENS} tokens; split it into [define] names")


# ----------------------------------------------------------------------------------------------- trees


def test_trees_with_operators_and_positions():
    assert expr.parse("a.b - 2 - c.d") == Binary("-", Binary("-", Name("a.b", 0), Number(2.0, 6), 4), Name("c.d", 10), 8)
    assert expr.parse("1 + 2 * 3 / 4") == Binary(
        "+", Number(1.0, 0), Binary("/", Binary("*", Number(2.0, 4), Number(3.0, 8), 6), Number(4.0, 12), 10), 2)
    assert expr.parse("-+x") == Unary("-", Unary("+", Name("x", 2), 1), 0)
    assert expr.parse("not not true") == Unary("not", Unary("not", Bool(True, 8), 4), 0)
    assert expr.parse("false or true and x") == Binary(
        "or", Bool(False, 0), Binary("and", Bool(True, 9), Name("x", 18), 14), 6)
    assert expr.parse("a or b or c") == Binary("or", Binary("or", Name("a", 0), Name("b", 5), 2), Name("c", 10), 7)
    assert expr.parse("a and b and c") == Binary("and", Binary("and", Name("a", 0), Name("b", 6), 2), Name("c", 12), 8)
    assert expr.parse("20 % > x") == Compare(">", Number(20.0, 0), Name("x", 7), 5)
    assert expr.parse("(1)") == Number(1.0, 1)


def test_comparison_chains_become_ands_of_links():
    assert expr.parse("1 < x <= 3") == Binary(
        "and", Compare("<", Number(1.0, 0), Name("x", 4), 2), Compare("<=", Name("x", 4), Number(3.0, 9), 6), 6)
    three = expr.parse("1 == x != y >= 2")
    assert three == Binary(
        "and",
        Binary("and", Compare("==", Number(1.0, 0), Name("x", 5), 2), Compare("!=", Name("x", 5), Name("y", 10), 7), 7),
        Compare(">=", Name("y", 10), Number(2.0, 15), 12), 12)
    for op in expr.COMPARISONS:
        assert expr.parse(f"x {op} 1") == Compare(op, Name("x", 0), Number(1.0, 3 + len(op)), 2)


def test_calls_with_their_arguments():
    assert expr.parse("min(1, x, 2 + 3)") == Call(
        "min", (Number(1.0, 4), Name("x", 7), Binary("+", Number(2.0, 10), Number(3.0, 14), 12)), 0)
    assert expr.parse("exists(face)") == Call("exists", (Name("face", 7),), 0)
    assert expr.parse(" max()") == Call("max", (), 1)
    assert expr.parse("abs(x or y)") == Call("abs", (Binary("or", Name("x", 4), Name("y", 9), 6),), 0)


@pytest.mark.parametrize("text, message", [
    ("", "column 1: empty expression"),
    ("   ", "column 4: empty expression"),
    ("x >", "column 4: expression ends too early"),
    ("(x", "column 3: expected ')', found end of expression"),
    ("(x y", "column 4: expected ')', found 'y'"),
    ("min(1 2)", "column 7: expected ')', found '2'"),
    ("(x, y)", "column 3: expected ')', found ','"),
    ("x)", "column 2: unexpected ')' after a complete expression"),
    ("x y", "column 3: unexpected 'y' after a complete expression"),
    ("and x", "column 1: 'and' needs a condition before it"),
    ("x or or y", "column 6: 'or' needs a condition before it"),
    ("not not", "column 8: expression ends too early"),
    ("x > not y", "column 5: 'not' needs a condition before it"),
    ("global.", "column 8: expected a metric name after 'global.'"),
    ("global.(", "column 8: expected a metric name after 'global.'"),
    ("a.b.c", "column 4: metric names have exactly one dot (region.metric)"),
    ("1 + ,", "column 5: unexpected ','"),
    ("* 2", "column 1: unexpected '*'"),
    ("1e999", "column 1: number 1e999 is out of range"),
    ("2 * 1e400", "column 5: number 1e400 is out of range"),
    ("mean(x)", "column 1: unknown function 'mean' (did you mean 'min', 'max'?); functions: exists, known, abs, min, max"),
    ("zzz(1)", "column 1: unknown function 'zzz'; functions: exists, known, abs, min, max"),
])
def test_syntax_errors_with_their_columns(text, message):
    assert str(error(text, None)) == message


@pytest.fixture
def deep_stack():
    """Sixty levels of brackets are ~500 Python frames in the parser; a tracer or mutation tool wrapping each
    call (mutmut's trampolines: three frames per call) needs more than the default limit of 1000."""
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10_000))
    yield
    sys.setrecursionlimit(old)


@pytest.mark.parametrize("opening, closing", [("(", ")"), ("-", ""), ("not ", ""), ("abs(", ")"), ("+", "")])
def test_nesting_is_allowed_to_sixty_levels(opening, closing, deep_stack):
    fine = opening * expr.MAX_DEPTH + "1" + closing * expr.MAX_DEPTH
    expr.parse(fine)
    deep = opening * (expr.MAX_DEPTH + 1) + "1" + closing * (expr.MAX_DEPTH + 1)
    e = error(deep, None)
    assert e.message == f"expression nested deeper than {expr.MAX_DEPTH} levels"
    assert e.column == len(opening) * (expr.MAX_DEPTH + 1) + 1  # the token after the 61st opening
    if opening != "abs(":  # (two of those would pass the token limit)
        # the depth is given back on the way out, one level per level: sixty levels twice in a row are fine,
        # and sixty-one after a nested sibling are not
        expr.parse(f"{fine} and {fine}")
        assert error(f"(1) and {deep}", None).message == f"expression nested deeper than {expr.MAX_DEPTH} levels"


# --------------------------------------------------------------------------------------------- checking


def test_check_returns_the_type_and_compares_it_with_the_expected_one():
    assert expr.check(expr.parse("1 + 2"), NAMES) == NUM
    assert expr.check(expr.parse("1 < 2"), NAMES) == BOOL
    assert expr.check(expr.parse("1 < 2"), NAMES, expected=BOOL) == BOOL
    assert expr.check(expr.parse("global.over_pct"), NAMES, expected=NUM) == NUM
    assert str(error("global.over_pct * 2", expected=BOOL)) == (
        "column 17: expected a condition (true/false), but the expression is a number")
    assert str(error("  exists(face)", expected=NUM)) == "column 3: expected a number, but the expression is a condition"
    assert str(error("true", expected=NUM)) == "column 1: expected a number, but the expression is a condition"


@pytest.mark.parametrize("text, kind", [
    ("true", BOOL), ("1", NUM), ("-1", NUM), ("+1", NUM), ("not true", BOOL), ("1 * 2", NUM), ("1 / 2", NUM),
    ("1 - 2", NUM), ("true or false", BOOL), ("true and false", BOOL), ("1 != 2", BOOL), ("abs(1)", NUM),
    ("min(1)", NUM), ("max(1, 2, 3)", NUM), ("known(1)", BOOL), ("exists(sky)", BOOL), ("exif.iso", NUM),
    ("image.megapixels", NUM),
])
def test_types_of_every_element(text, kind):
    assert expr.check(expr.parse(text), NAMES) == kind


@pytest.mark.parametrize("text, message", [
    ("1 + true", "column 5: '+' works on numbers, but got a condition"),
    ("true - 1", "column 1: '-' works on numbers, but got a condition"),
    ("-true", "column 2: '-' works on numbers, but got a condition"),
    ("not 1", "column 5: 'not' works on conditions (true/false), but got a number"),
    ("true and 2", "column 10: 'and' works on conditions (true/false), but got a number"),
    ("3 or true", "column 1: 'or' works on conditions (true/false), but got a number"),
    ("true < 1", "column 1: '<' works on numbers, but got a condition"),
    ("1 >= (1 < 2)", "column 9: '>=' works on numbers, but got a condition"),
    ("abs(true)", "column 5: abs() works on numbers, but got a condition"),
    ("max(1, 2 > 1)", "column 10: max() works on numbers, but got a condition"),
    ("abs(1, 2)", "column 1: abs() takes exactly one argument"),
    ("known()", "column 1: known() takes exactly one argument"),
    ("min()", "column 1: min() takes at least one argument"),
    ("exists()", "column 1: exists() takes one region name, e.g. exists(face)"),
    ("exists(face, sky)", "column 1: exists() takes one region name, e.g. exists(face)"),
    ("exists(1)", "column 1: exists() takes one region name, e.g. exists(face)"),
    ("exists(face.bad_pct)", "column 1: exists() takes one region name, e.g. exists(face)"),
    ("exists(fase)", "column 8: unknown region 'fase' (did you mean 'face'?); "
                     "regions: global, face, person, subject, background, sky"),
    ("exists(zzz)", "column 8: unknown region 'zzz'; regions: global, face, person, subject, background, sky"),
])
def test_type_errors_name_the_operator_and_the_operand(text, message):
    assert str(error(text)) == message


def test_unknown_names_get_the_closest_suggestion():
    names = expr.Names(metrics=metric_types(), defines={"spread": expr.parse("1")}, regions=REGIONS)
    cases = {
        "face": "'face' is a region, not a number: use a metric such as 'face.bad_pct' or exists(face)",
        "sky": "'sky' is a region, not a number: use a metric such as 'sky.bad_pct' or exists(sky)",
        "sprad": "unknown metric 'sprad' (did you mean 'spread'?)",
        "fcae.zzzzzzzzzz": "unknown metric 'fcae.zzzzzzzzzz' (did you mean 'face'?)",
        "imgae.zzzzzzzzzz": "unknown metric 'imgae.zzzzzzzzzz' (did you mean 'image'?)",
        "zzz": "unknown metric 'zzz'",
        "qq.zzzzzzzzzz": "unknown metric 'qq.zzzzzzzzzz'",
        "face.zzzzzzzzzz": "unknown metric 'face.zzzzzzzzzz'",
        "exfi.zzzzzzzzzz": "unknown metric 'exfi.zzzzzzzzzz' (did you mean 'exif'?)",
        "exif.zzzzzzzzzz": "unknown metric 'exif.zzzzzzzzzz'",
        "image.zzzzzzzzzz": "unknown metric 'image.zzzzzzzzzz'",
    }
    for name, message in cases.items():
        assert str(error(f"{name} > 1", names)) == f"column 1: {message}", name
    assert str(error("1 < global.over_pc", names)).startswith(
        "column 5: unknown metric 'global.over_pc' (did you mean 'global.over_pct'")
    # a close metric wins over a close region: 'fcae.bad_pct' is most likely 'face.bad_pct', not just 'face'
    assert str(error("fcae.bad_pct > 1", names)).startswith(
        "column 1: unknown metric 'fcae.bad_pct' (did you mean 'face.bad_pct'")


def test_defines_have_the_type_of_their_expression_and_cycles_are_named():
    names = expr.Names(metrics=metric_types(),
                       defines={"ok": expr.parse("1 < 2"), "n": expr.parse("ok2 * 2"), "ok2": expr.parse("3"),
                                "a": expr.parse("b + 1"), "b": expr.parse("c"), "c": expr.parse("a"),
                                "me": expr.parse("me")},
                       regions=REGIONS)
    assert expr.check(expr.parse("ok"), names) == BOOL
    assert expr.check(expr.parse("n"), names) == NUM
    assert str(error("  a > 1", names)) == "column 1: definition refers to itself: a → b → c → a"
    assert str(error("me", names)) == "column 1: definition refers to itself: me → me"
    assert str(error("ok + 1", names)) == "column 1: '+' works on numbers, but got a condition"
    # on the right of a comparison too
    assert expr.check(expr.parse("1 < n"), names) == BOOL
    assert str(error("1 < 2 * a", names)) == "column 1: definition refers to itself: a → b → c → a"


# ------------------------------------------------------------------------------------- size and names


def test_measure_counts_the_expanded_tree_once_per_define():
    defines = {"d": expr.parse("x + 1"), "e": expr.parse("d * d"), "f": expr.parse("-e")}
    assert expr.measure(expr.parse("1"), {}) == (1, 1)
    assert expr.measure(expr.parse("x + 1"), {}) == (3, 2)
    assert expr.measure(expr.parse("min(1, 2, -x)"), {}) == (5, 3)
    assert expr.measure(expr.parse("not (1 < 2)"), {}) == (4, 3)
    assert expr.measure(expr.parse("d"), defines) == (3, 2)  # the define's tree, not the name
    assert expr.measure(expr.parse("e"), defines) == (7, 3)
    assert expr.measure(expr.parse("f > 0"), defines) == (10, 5)
    assert expr.measure(expr.parse("exists(face)"), {}) == (2, 2)


def test_measure_of_a_cycle_ends_and_counts_the_name_reached_again_as_nothing():
    """measure() runs before check() (it bounds check's recursion), so it meets cyclic definitions: the name
    reached again while its own definition is measured adds nothing, and check() then reports the cycle."""
    cyclic = {"a": expr.parse("-b"), "b": expr.parse("a")}
    assert expr.measure(expr.parse("a"), cyclic) == (1, 1)
    assert expr.measure(expr.parse("b + 1"), cyclic) == (3, 2)


def test_measure_refuses_trees_past_either_limit(monkeypatch):
    monkeypatch.setattr(expr, "MAX_EXPANDED_NODES", 7)
    monkeypatch.setattr(expr, "MAX_EXPANDED_DEPTH", 3)
    defines = {"d": expr.parse("x + 1"), "e": expr.parse("d * d")}
    assert expr.measure(expr.parse("e"), defines) == (7, 3)  # exactly at both limits
    with pytest.raises(RuleError) as info:
        expr.measure(expr.parse("  e + 0"), defines)
    assert str(info.value) == ("column 5: expression is too large with its definitions expanded (9 elements, 4 "
                               "levels deep; at most 7 and 3)")
    with pytest.raises(RuleError) as info:
        expr.measure(expr.parse("-(-(-x))"), {})
    assert info.value.message.startswith("expression is too large with its definitions expanded (4 elements, 4 levels")
    with pytest.raises(RuleError) as info:
        expr.measure(expr.parse("x+x+x+x"), {})
    assert info.value.message.startswith("expression is too large with its definitions expanded (7 elements, 4 levels")
    monkeypatch.setattr(expr, "MAX_EXPANDED_DEPTH", 10)
    with pytest.raises(RuleError) as info:
        expr.measure(expr.parse("min(1, 2, 3, 4, 5, 6, 7)"), {})
    assert info.value.message.startswith("expression is too large with its definitions expanded (8 elements, 2 levels")


def test_referenced_names_through_defines_and_exists():
    defines = {"d": expr.parse("face.bad_pct + sky.over_pct"), "e": expr.parse("d > image.width"),
               "loop": expr.parse("loop + global.over_pct")}
    names = expr.Names(metrics=metric_types(), defines=defines, regions=REGIONS)
    node = expr.parse("e and not exists(person) or abs(-exif.iso) < min(1, d)")
    assert expr.referenced_names(node) == {"e", "exif.iso", "d"}
    assert expr.referenced_names(node, names) == {"face.bad_pct", "sky.over_pct", "image.width", "exif.iso"}
    assert expr.referenced_names(node, names, skip_exists=False) == {
        "face.bad_pct", "sky.over_pct", "image.width", "exif.iso", "person"}
    assert expr.referenced_names(expr.parse("loop"), names) == {"loop", "global.over_pct"}
    assert expr.referenced_names(expr.parse("1 < 2"), names) == set()
    assert expr.referenced_names(expr.parse("-d > 1"), names) == {"face.bad_pct", "sky.over_pct"}


# ----------------------------------------------------------------------------------- canonical text


@pytest.mark.parametrize("text, source", [
    ("(1 + 2) * 3", "(1 + 2) * 3"),
    ("1 + 2 * 3", "1 + 2 * 3"),
    ("1 - (2 - 3)", "1 - (2 - 3)"),
    ("(1 - 2) - 3", "1 - 2 - 3"),
    ("1 / (2 * 3)", "1 / (2 * 3)"),
    ("-(1 + x)", "-(1 + x)"),
    ("- x", "-x"),
    ("+-x", "+-x"),
    ("not (a or b) and c", "not (a or b) and c"),
    ("not a < 1", "not a < 1"),
    ("(a or b) and (c or d)", "(a or b) and (c or d)"),
    ("a or (b and c)", "a or b and c"),
    ("a and (b and c)", "a and (b and c)"),
    ("1 < x <= 2", "1 < x and x <= 2"),
    ("(x + 1) >= -(y)", "x + 1 >= -y"),
    ("x < (1 + 2)", "x < 1 + 2"),
    ("(1 < 2) == true", "(1 < 2) == true"),
    ("(not a) == b", "(not a) == b"),
    ("x == (y != z)", "x == (y != z)"),
    ("min(1, (2 + 3), -x)", "min(1, 2 + 3, -x)"),
    ("exists(face) == true", "exists(face) == true"),
    ("false != (1 < 2)", "false != (1 < 2)"),
    ("0.125 * 20 %", "0.125 * 20"),
])
def test_canonical_text(text, source):
    assert expr.to_source(expr.parse(text)) == source
    assert expr.to_source(expr.parse(source)) == source


@pytest.mark.parametrize("value, text", [
    (None, "n/a"), (math.nan, "n/a"), (math.inf, "∞"), (-math.inf, "−∞"), (23.0, "23"), (-4.0, "-4"), (0.0, "0"),
    (0.125, "0.125"), (12.3456, "12.3"), (-12.3456, "-12.3"), (10.0, "10"), (10.04, "10"), (99.96, "100"),
    (1 / 3, "0.333"), (9.99, "9.99"), (-0.001234, "-0.00123"), (2.5, "2.5"), (1e15, "1000000000000000"),
    (1.5e15, "1500000000000000"), (123456.78, "123456.8"), (10.5, "10.5"),
])
def test_number_format(value, text):
    assert expr.format_number(value) == text


def test_negated_operators_and_symbols():
    assert {op: expr.negate_op(op) for op in expr.COMPARISONS} == {
        "<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
    assert {op: expr.symbol(op) for op in expr.COMPARISONS} == {
        "<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}
