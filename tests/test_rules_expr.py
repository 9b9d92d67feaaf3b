"""The rule expression language: tokenizer, parser, type checks, vectorised evaluation, safety properties."""

from __future__ import annotations

import builtins
import contextlib
import math
import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exposure_cli.rules import expr
from exposure_cli.rules.expr import RuleError
from exposure_cli.rules.metrics import metric_types
from exposure_cli.stats import REGIONS

NAMES = expr.Names(metrics=metric_types(), defines={}, regions=REGIONS)


def evaluate(text: str, columns: dict[str, list[float]], present: dict[str, list[bool]] | None = None, defines=None):
    names = expr.Names(metrics=metric_types(), defines=defines or {}, regions=REGIONS)
    node = expr.parse(text)
    expr.check(node, names)
    size = len(next(iter(columns.values()))) if columns else 1
    env = expr.Env(
        lookup=lambda n: np.asarray(columns[n], dtype=np.float64),
        defines=names.defines,
        present=lambda r: np.asarray((present or {}).get(r, [True] * size)),
        size=size,
    )
    return expr.evaluate(node, env)


def test_precedence_and_associativity():
    cols = {"global.over_pct": [10.0]}
    assert evaluate("global.over_pct - 2 - 3", cols)[0] == 5.0  # left-associative
    assert evaluate("2 + global.over_pct * 3", cols)[0] == 32.0
    assert evaluate("(2 + global.over_pct) * 3", cols)[0] == 36.0
    assert evaluate("-global.over_pct / 4", cols)[0] == -2.5
    assert evaluate("global.over_pct >= 20 or global.over_pct < 11 and not global.over_pct == 10", cols)[0] == False  # noqa: E712
    assert evaluate("not global.over_pct > 20 and global.over_pct > 5", cols)[0] == True  # noqa: E712


def test_vectorised_over_many_photos_and_nan_makes_comparisons_false():
    cols = {"face.bad_pct": [1.0, 15.0, math.nan], "global.over_pct": [30.0, 5.0, 50.0]}
    fired = evaluate("face.bad_pct < 10 or global.over_pct > 40", cols)
    assert fired.tolist() == [True, False, True]
    assert evaluate("face.bad_pct != 3", cols).tolist() == [True, True, False]
    assert evaluate("not face.bad_pct < 10", cols).tolist() == [False, True, True]


def test_chained_comparison_percent_suffix_and_functions():
    cols = {"global.bad_pct": [4.0, 12.0, 25.0], "global.mean_residual": [-0.2, 0.05, 0.3]}
    assert evaluate("5 <= global.bad_pct < 20", cols).tolist() == [False, True, False]
    assert evaluate("global.bad_pct >= 10 %", cols).tolist() == [False, True, True]
    assert evaluate("abs(global.mean_residual) > 0.1", cols).tolist() == [True, False, True]
    assert evaluate("min(global.bad_pct, 10, 20)", cols).tolist() == [4.0, 10.0, 10.0]
    assert evaluate("max(global.bad_pct, 10)", cols).tolist() == [10.0, 12.0, 25.0]
    assert evaluate("known(global.bad_pct)", {"global.bad_pct": [1.0, math.nan]}).tolist() == [True, False]
    assert evaluate("exists(face) and true", cols, {"face": [True, False, True]}).tolist() == [True, False, True]
    assert evaluate("global.bad_pct / 0 > 1", cols).tolist() == [True, True, True]  # inf, no exception


def test_defines_are_expanded_and_cycles_rejected():
    defines = {"blown": expr.parse("global.over_pct > 20"), "double": expr.parse("global.over_pct * 2")}
    cols = {"global.over_pct": [10.0, 30.0]}
    assert evaluate("blown or double > 30", cols, defines=defines).tolist() == [False, True]
    cyclic = expr.Names(metrics=metric_types(), defines={"a": expr.parse("b + 1"), "b": expr.parse("a")}, regions=REGIONS)
    with pytest.raises(RuleError, match="refers to itself"):
        expr.check(expr.parse("a > 1"), cyclic)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty expression"),
        ("global.over_pct >", "ends too early"),
        ("global.over_pct = 20", "compare with '=='"),
        ("global.over_pct > 20 && face.bad_pct < 3", "use 'and' / 'or'"),
        ("(global.over_pct > 20", "expected ')'"),
        ("global.over_pct > 20)", "unexpected ')'"),
        ("global.over_pc > 20", "did you mean 'global.over_pct'"),
        ("glbal.over_pct > 20", "unknown metric"),
        ("face > 3", "is a region"),
        ("exists(fase)", "did you mean 'face'"),
        ("exists(face.bad_pct)", "takes one region name"),
        ("__import__('os')", "unexpected character"),
        ("__import__(os)", "unknown function"),
        ("eval(1)", "unknown function"),
        ("global.over_pct.real > 1", "exactly one dot"),
        ("global.over_pct", "expected a condition"),
        ("global.over_pct > 1 + true", "works on numbers"),
        ("1 and 2", "works on conditions"),
        ("abs(1, 2) > 0", "exactly one argument"),
        ("'text' == 1", "unexpected character"),
        ("1e999 > 1", "out of range"),
        ("global.over_pct[0] > 1", "unexpected character"),
        ("-" * 100 + "1 > 0", "nested deeper"),
    ],
)
def test_invalid_expressions_raise_rule_error_with_column(text, message):
    with pytest.raises(RuleError, match=re.escape(message)) as info:
        expr.check(expr.parse(text), NAMES, expected=expr.BOOL)
    assert info.value.column is None or info.value.column >= 1


def test_error_column_points_at_the_problem():
    with pytest.raises(RuleError) as info:
        expr.check(expr.parse("global.bad_pct < 5 and face.bda_pct < 2"), NAMES)
    assert info.value.column == len("global.bad_pct < 5 and ") + 1
    assert "face.bad_pct" in str(info.value)


def test_to_source_round_trips_with_the_same_meaning():
    cols = {"global.over_pct": [1.0, 30.0], "global.bad_pct": [70.0, 2.0], "face.bad_pct": [1.0, 9.0],
            "global.mean_residual": [-0.5, 0.2]}
    for text in [
        "global.over_pct - (2 - 3) >= 20 and not (exists(face) or face.bad_pct < 2)",
        "min(global.bad_pct * 0.8, 50) > -global.mean_residual / 2",
        "1 - 2 - 3 < global.over_pct",
        "5 <= global.bad_pct < 80 or not not face.bad_pct > 3",
    ]:
        source = expr.to_source(expr.parse(text))
        assert expr.to_source(expr.parse(source)) == source
        present = {"face": [True, False]}
        assert evaluate(source, cols, present).tolist() == evaluate(text, cols, present).tolist()


# --------------------------------------------------------------------------------------- properties

_ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyz_.()[]{}<>=!+-*/%,'\"\\ 0123456789\n\t;:@#$^&|~`")
    + ["and", "or", "not", "global", "face", "over_pct", "exists", "__import__", "os", "eval", "lambda", " "]
)
_TOKENS = st.sampled_from(
    ["global.over_pct", "face.bad_pct", "exists(face)", "known(exif.iso)", "abs(", "min(", "max(", "(", ")",
     ",", "and", "or", "not", "<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/", "1", "20", "0.5", "%",
     "true", "false", "x", "__class__", ".", "import", "os.system"]
)


@contextlib.contextmanager
def _never_executes():
    """eval/exec/compile/__import__ raise while the block runs: the language must not reach them."""

    def forbidden(*args, **kwargs):  # pragma: no cover - reaching this is the failure
        raise AssertionError("the expression language must never call eval/exec/compile/__import__")

    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile", "__import__")}
    # imports of already-loaded modules inside the library (lazy "from ..registry import suggest") are fine
    real_import = saved["__import__"]

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.partition(".")[0] not in sys.modules:
            forbidden()
        return real_import(name, globals, locals, fromlist, level)

    try:
        for name in ("eval", "exec", "compile"):
            setattr(builtins, name, forbidden)
        builtins.__import__ = guarded_import
        yield
    finally:
        for name, value in saved.items():
            setattr(builtins, name, value)


def _run(text: str) -> None:
    try:
        node = expr.parse(text)
        kind = expr.check(node, NAMES)
    except RuleError:
        return
    cols = {name: np.array([1.0, math.nan, -3.0]) for name in NAMES.metrics}
    env = expr.Env(lambda n: cols[n], {}, lambda r: np.array([True, False, True]), 3)
    value = expr.evaluate(node, env)
    assert value.shape == (3,)
    assert value.dtype == (np.bool_ if kind == expr.BOOL else np.float64)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_random_text_only_ever_raises_rule_error(text):
    with _never_executes():
        _run(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKENS, max_size=25).map(" ".join))
def test_random_token_soup_only_ever_raises_rule_error(text):
    with _never_executes():
        _run(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_unicode_only_ever_raises_rule_error(text):
    _run(text)


def test_unary_plus_keeps_the_value_and_minus_negates_it():
    cols = {"global.over_pct": [3.0, -2.0]}
    assert evaluate("+global.over_pct", cols).tolist() == [3.0, -2.0]
    assert evaluate("-+global.over_pct", cols).tolist() == [-3.0, 2.0]
    assert evaluate("+-global.over_pct", cols).tolist() == [-3.0, 2.0]


def _sub_expressions(node):
    yield node
    if isinstance(node, expr.Unary):
        yield from _sub_expressions(node.operand)
    elif isinstance(node, (expr.Binary, expr.Compare)):
        yield from _sub_expressions(node.left)
        yield from _sub_expressions(node.right)
    elif isinstance(node, expr.Call) and node.func != "exists":
        for arg in node.args:
            yield from _sub_expressions(arg)


def test_the_memo_holds_the_value_of_every_sub_expression():
    """Scoring writes its reasons from the memo: every node evaluated, a define's tree included."""
    spread = expr.parse("global.p95_residual - global.p05_residual")
    names = expr.Names(metrics=metric_types(), defines={"spread": spread}, regions=REGIONS)
    node = expr.parse("max(abs(-spread), 0.1) * 2 >= 1 and not (global.over_pct < 5 or exists(face))")
    expr.check(node, names)
    columns = {"global.p95_residual": [0.3, 0.1], "global.p05_residual": [-0.4, 0.0], "global.over_pct": [7.0, 2.0]}
    env = expr.Env(lookup=lambda n: np.asarray(columns[n], dtype=np.float64), defines=names.defines,
                   present=lambda r: np.array([False, True]), size=2)
    memo: dict = {}
    assert expr.evaluate(node, env, memo).tolist() == [True, False]
    for sub in [*_sub_expressions(node), *_sub_expressions(spread)]:
        assert id(sub) in memo, expr.to_source(sub)
    assert np.asarray(memo[id(spread)]).tolist() == pytest.approx([0.7, 0.1])
    left = node.left  # max(abs(-spread), 0.1) * 2 >= 1
    assert np.asarray(memo[id(left.left)]).tolist() == pytest.approx([1.4, 0.2])
    assert np.asarray(memo[id(node.right)]).tolist() == [True, False]  # not (… or exists(face))


def test_nan_and_division_by_zero_give_values_without_numpy_warnings():
    """0 ÷ 0, x ÷ 0 and comparisons with n/a are part of normal rule evaluation (an absent region, an empty
    share): they give NaN, ±inf and false, and numpy's RuntimeWarnings must not reach the user's terminal."""
    import warnings

    cols = {"global.over_pct": [0.0, 5.0, math.nan], "global.under_pct": [0.0, 0.0, 1.0]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ratio = evaluate("global.over_pct / global.under_pct", cols)
        above = evaluate("global.over_pct / global.under_pct > 1", cols)
    assert np.isnan(ratio[0]) and ratio[1] == math.inf and np.isnan(ratio[2])
    assert above.tolist() == [False, True, False]
