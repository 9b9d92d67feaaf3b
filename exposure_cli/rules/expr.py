"""The restricted expression language of rule files: tokenizer, parser, type checker, vectorised evaluator.

A condition such as ``global.over_pct >= 20 and not exists(face)`` is parsed by a hand-written
recursive-descent parser into a small tree of frozen dataclasses. Nothing in a rule file is ever handed
to Python's ``eval``/``exec``/``compile``, no name is looked up in a Python namespace, and there is no
attribute access, indexing, call of arbitrary functions or import: the only names are metrics from the
catalogue (``region.metric``, ``image.*``, ``exif.*``), names the rule file defines itself, ``true`` and
``false``, and the built-in functions listed in :data:`FUNCTIONS`.

Grammar (lowest precedence first)::

    expr     := or_expr
    or_expr  := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | compare
    compare  := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)*     # chains like 5 <= x < 10
    sum      := product (("+" | "-") product)*
    product  := unary (("*" | "/") unary)*
    unary    := "-" unary | "+" unary | primary
    primary  := NUMBER ["%"] | "true" | "false" | NAME ["." NAME] | NAME "(" [args] ")" | "(" expr ")"

Every expression has a static type, ``num`` or ``bool``; mixing them is a validation error, found before
any photo is scored. Evaluation works on whole columns at once (numpy arrays, one element per photo), so
rescoring 100 000 rows costs a few array operations per condition. ``NaN`` (an absent region's metric, a
missing EXIF field) makes every comparison false.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, MutableMapping, Sequence, Union

import numpy as np

#: Longest expression accepted; rule conditions are short, and a cap keeps parsing cheap on hostile input.
MAX_EXPRESSION_LENGTH = 2000
#: Deepest nesting accepted (parentheses, unary minus, not): guards against recursion exhaustion.
MAX_DEPTH = 60
#: Most tokens accepted: a flat chain (``1+1+…``, ``a<b<…``) builds a tree as deep as it is long, and the
#: checker and evaluator recurse over it, so its length is capped too.
MAX_TOKENS = 256

#: Limits on a condition with its definitions expanded: a definition used twice by the next one doubles
#: the tree (``d2 = "d1 + d1"`` …), so without them a 40-line rule file could take forever to score.
MAX_EXPANDED_NODES = 5000
MAX_EXPANDED_DEPTH = 200

NUM = "num"
BOOL = "bool"

KEYWORDS = ("and", "or", "not", "true", "false")


class RuleError(ValueError):
    """A rule file or expression is invalid. The one error type validation ever raises.

    Attributes:
        message: What is wrong.
        file: The rule file (``None`` for a bare expression).
        field: Where in the file (``rows[2].when``).
        line: 1-based line in the file, when known.
        column: 1-based column inside the expression, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.field = field
        self.line = line
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file) + (f":{self.line}" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        if self.field:
            where.append(self.field)
        if self.column:
            where.append(f"column {self.column}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def located(self, *, file: str | None = None, field: str | None = None, line: int | None = None) -> "RuleError":
        """The same error with the file, field and line filled in where they were unknown."""
        return RuleError(
            self.message,
            file=self.file or file,
            field=self.field or field,
            line=self.line or line,
            column=self.column,
        )

    def __reduce__(self):  # keep it picklable across process pools despite the keyword-only arguments
        return (_rebuild_rule_error, (self.message, self.file, self.field, self.line, self.column))


def _rebuild_rule_error(message, file, field, line, column) -> RuleError:
    return RuleError(message, file=file, field=field, line=line, column=column)


# --------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int  # 0-based offset in the expression


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|<|>|\(|\)|,|\.|\+|-|\*|/|%)
    """,
    re.VERBOSE | re.ASCII,  # digits are 0-9 only: "٥" or "１００" are not numbers
)


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; anything outside the language is a :class:`RuleError`."""
    if not isinstance(text, str):
        raise RuleError(f"expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise RuleError(f"expression is {len(text)} characters long; at most {MAX_EXPRESSION_LENGTH} allowed")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            char = text[pos]
            hint = ""
            if char == "=":
                hint = " (compare with '==')"
            elif char in "&|":
                hint = " (use 'and' / 'or')"
            elif char == "!":
                hint = " (use 'not')"
            raise RuleError(f"unexpected character {char!r}{hint}", column=pos + 1)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), pos))
            if len(tokens) > MAX_TOKENS:
                raise RuleError(f"expression has more than {MAX_TOKENS} tokens; split it into [define] names",
                                column=pos + 1)
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ----------------------------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Number:
    value: float
    pos: int


@dataclass(frozen=True)
class Bool:
    value: bool
    pos: int


@dataclass(frozen=True)
class Name:
    """A metric (``global.over_pct``) or a name the rule file defines (``face_ok``)."""

    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "not"
    operand: "Node"
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str  # "+", "-", "*", "/", "and", "or"
    left: "Node"
    right: "Node"
    pos: int


@dataclass(frozen=True)
class Compare:
    """``a < b`` (a chain ``a < b <= c`` is parsed into ``a < b and b <= c``)."""

    op: str
    left: "Node"
    right: "Node"
    pos: int


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Node", ...]
    pos: int


Node = Union[Number, Bool, Name, Unary, Binary, Compare, Call]

COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")

#: Built-in functions: name → (argument kinds, result type). "region" takes a bare region name.
FUNCTIONS: dict[str, tuple[str, str]] = {
    "exists": ("region", BOOL),
    "known": ("num", BOOL),
    "abs": ("num", NUM),
    "min": ("num+", NUM),
    "max": ("num+", NUM),
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> RuleError:
        token = token or self.current
        return RuleError(message, column=token.pos + 1)

    def expect(self, text: str) -> Token:
        if self.current.kind != "op" or self.current.text != text:
            found = "end of expression" if self.current.kind == "end" else repr(self.current.text)
            raise self.error(f"expected {text!r}, found {found}")
        return self.advance()

    def is_keyword(self, word: str) -> bool:
        return self.current.kind == "name" and self.current.text == word

    def nested(self):
        parser = self

        class _Depth:
            def __enter__(self):
                parser.depth += 1
                if parser.depth > MAX_DEPTH:
                    raise parser.error(f"expression nested deeper than {MAX_DEPTH} levels")

            def __exit__(self, *exc):
                parser.depth -= 1
                return False

        return _Depth()

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise self.error("empty expression")
        node = self.parse_or()
        if self.current.kind != "end":
            raise self.error(f"unexpected {self.current.text!r} after a complete expression")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.is_keyword("or"):
            token = self.advance()
            node = Binary("or", node, self.parse_and(), token.pos)
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.is_keyword("and"):
            token = self.advance()
            node = Binary("and", node, self.parse_not(), token.pos)
        return node

    def parse_not(self) -> Node:
        if self.is_keyword("not"):
            token = self.advance()
            with self.nested():
                return Unary("not", self.parse_not(), token.pos)
        return self.parse_compare()

    def parse_compare(self) -> Node:
        left = self.parse_sum()
        links: list[Compare] = []
        while self.current.kind == "op" and self.current.text in COMPARISONS:
            token = self.advance()
            right = self.parse_sum()
            links.append(Compare(token.text, left, right, token.pos))
            left = right
        if not links:
            return left
        node: Node = links[0]
        for link in links[1:]:
            node = Binary("and", node, link, link.pos)
        return node

    def parse_sum(self) -> Node:
        node = self.parse_product()
        while self.current.kind == "op" and self.current.text in ("+", "-"):
            token = self.advance()
            node = Binary(token.text, node, self.parse_product(), token.pos)
        return node

    def parse_product(self) -> Node:
        node = self.parse_unary()
        while self.current.kind == "op" and self.current.text in ("*", "/"):
            token = self.advance()
            node = Binary(token.text, node, self.parse_unary(), token.pos)
        return node

    def parse_unary(self) -> Node:
        if self.current.kind == "op" and self.current.text in ("-", "+"):
            token = self.advance()
            with self.nested():
                return Unary(token.text, self.parse_unary(), token.pos)
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.current
        if token.kind == "num":
            self.advance()
            value = float(token.text)
            if not math.isfinite(value):
                raise self.error(f"number {token.text} is out of range", token)
            if self.current.kind == "op" and self.current.text == "%":
                self.advance()  # "20 %" reads as 20: percentage metrics are already in percent
            return Number(value, token.pos)
        if token.kind == "name":
            self.advance()
            if token.text in ("true", "false"):
                return Bool(token.text == "true", token.pos)
            if token.text in ("and", "or", "not"):
                raise self.error(f"{token.text!r} needs a condition before it", token)
            if self.current.kind == "op" and self.current.text == "(":
                return self.parse_call(token)
            name = token.text
            if self.current.kind == "op" and self.current.text == ".":
                self.advance()
                member = self.current
                if member.kind != "name":
                    raise self.error(f"expected a metric name after '{name}.'")
                self.advance()
                name = f"{name}.{member.text}"
                if self.current.kind == "op" and self.current.text == ".":
                    raise self.error("metric names have exactly one dot (region.metric)")
            return Name(name, token.pos)
        if token.kind == "op" and token.text == "(":
            self.advance()
            with self.nested():
                node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "end":
            raise self.error("expression ends too early")
        raise self.error(f"unexpected {token.text!r}")

    def parse_call(self, name_token: Token) -> Node:
        func = name_token.text
        if func not in FUNCTIONS:
            from ..registry import suggest

            raise self.error(
                f"unknown function {func!r}{suggest(func, list(FUNCTIONS))}; "
                f"functions: {', '.join(FUNCTIONS)}",
                name_token,
            )
        self.expect("(")
        args: list[Node] = []
        with self.nested():
            if not (self.current.kind == "op" and self.current.text == ")"):
                args.append(self.parse_or())
                while self.current.kind == "op" and self.current.text == ",":
                    self.advance()
                    args.append(self.parse_or())
        self.expect(")")
        return Call(func, tuple(args), name_token.pos)


def parse(text: str) -> Node:
    """Parse an expression into a tree (syntax only; see :func:`check` for names and types)."""
    return _Parser(text).parse()


# ------------------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class Names:
    """What names an expression may use.

    Attributes:
        metrics: Known metric names (``global.over_pct`` …) → their static type (always ``num``).
        defines: Names the rule file defines → their parsed expression (checked recursively).
        regions: Region names ``exists(...)`` accepts.
    """

    metrics: Mapping[str, str]
    defines: Mapping[str, Node]
    regions: Sequence[str]


def check(node: Node, names: Names, *, expected: str | None = None, _stack: tuple[str, ...] = ()) -> str:
    """Resolve names and types; return the expression's type. Raises :class:`RuleError`."""
    kind = _type_of(node, names, _stack)
    if expected is not None and kind != expected:
        want = "a condition (true/false)" if expected == BOOL else "a number"
        got = "a number" if kind == NUM else "a condition"
        raise RuleError(f"expected {want}, but the expression is {got}", column=_pos(node) + 1)
    return kind


def _pos(node: Node) -> int:
    return node.pos


def _type_of(node: Node, names: Names, stack: tuple[str, ...]) -> str:
    if isinstance(node, Number):
        return NUM
    if isinstance(node, Bool):
        return BOOL
    if isinstance(node, Name):
        if node.name in names.metrics:
            return names.metrics[node.name]
        if node.name in names.defines:
            if node.name in stack:
                cycle = " → ".join(stack + (node.name,))
                raise RuleError(f"definition refers to itself: {cycle}", column=node.pos + 1)
            return _type_of(names.defines[node.name], names, stack + (node.name,))
        raise RuleError(_unknown_name_message(node.name, names), column=node.pos + 1)
    if isinstance(node, Unary):
        want = BOOL if node.op == "not" else NUM
        _require(node.operand, want, names, stack, f"'{node.op}'")
        return want
    if isinstance(node, Binary):
        want = BOOL if node.op in ("and", "or") else NUM
        _require(node.left, want, names, stack, f"'{node.op}'")
        _require(node.right, want, names, stack, f"'{node.op}'")
        return want
    if isinstance(node, Compare):
        _require(node.left, NUM, names, stack, f"'{node.op}'")
        _require(node.right, NUM, names, stack, f"'{node.op}'")
        return BOOL
    if isinstance(node, Call):
        arg_kind, result = FUNCTIONS[node.func]
        if arg_kind == "region":
            if len(node.args) != 1 or not isinstance(node.args[0], Name) or "." in node.args[0].name:
                raise RuleError(f"{node.func}() takes one region name, e.g. {node.func}(face)", column=node.pos + 1)
            region = node.args[0].name
            if region not in names.regions:
                from ..registry import suggest

                raise RuleError(
                    f"unknown region {region!r}{suggest(region, list(names.regions))}; "
                    f"regions: {', '.join(names.regions)}",
                    column=node.args[0].pos + 1,
                )
            return result
        if arg_kind == "num" and len(node.args) != 1:
            raise RuleError(f"{node.func}() takes exactly one argument", column=node.pos + 1)
        if arg_kind == "num+" and len(node.args) < 1:
            raise RuleError(f"{node.func}() takes at least one argument", column=node.pos + 1)
        for arg in node.args:
            _require(arg, NUM, names, stack, f"{node.func}()")
        return result
    raise RuleError(f"unsupported expression element {type(node).__name__}")  # pragma: no cover


def _require(node: Node, want: str, names: Names, stack: tuple[str, ...], where: str) -> None:
    got = _type_of(node, names, stack)
    if got != want:
        need = "conditions (true/false)" if want == BOOL else "numbers"
        have = "a condition" if got == BOOL else "a number"
        raise RuleError(f"{where} works on {need}, but got {have}", column=node.pos + 1)


def _unknown_name_message(name: str, names: Names) -> str:
    from ..registry import suggest

    if name in names.regions:
        return f"{name!r} is a region, not a number: use a metric such as '{name}.bad_pct' or exists({name})"
    hint = suggest(name, list(names.metrics) + list(names.defines))
    if not hint and "." in name:
        # Nothing close among all the names (so nothing among the region's own metrics either: difflib
        # scores each candidate on its own). An unknown region may be a typo of a known one.
        region = name.partition(".")[0]
        if region not in names.regions and region not in ("image", "exif"):
            hint = suggest(region, list(names.regions) + ["image", "exif"])
    return f"unknown metric {name!r}{hint}"


def measure(node: Node, defines: Mapping[str, Node]) -> tuple[int, int]:
    """(node count, depth) of an expression with its definitions expanded; raises RuleError past the limits.

    Definitions are measured once each, so this is linear in the size of the rule file even when the
    expansion is huge. Call it after :func:`check` (which rejects cycles).
    """
    memo: dict[str, tuple[int, int]] = {}

    def walk(n: Node) -> tuple[int, int]:
        if isinstance(n, Name) and n.name in defines:
            if n.name not in memo:
                memo[n.name] = (0, 0)  # cycle guard; check() has already rejected real cycles
                memo[n.name] = walk(defines[n.name])
            return memo[n.name]
        children: tuple[Node, ...] = ()
        if isinstance(n, Unary):
            children = (n.operand,)
        elif isinstance(n, (Binary, Compare)):
            children = (n.left, n.right)
        elif isinstance(n, Call):
            children = n.args
        size, depth = 1, 0
        for child in children:
            child_size, child_depth = walk(child)
            size += child_size
            depth = max(depth, child_depth)
        return size, depth + 1

    size, depth = walk(node)
    if size > MAX_EXPANDED_NODES or depth > MAX_EXPANDED_DEPTH:
        raise RuleError(
            f"expression is too large with its definitions expanded ({size} elements, {depth} levels deep; "
            f"at most {MAX_EXPANDED_NODES} and {MAX_EXPANDED_DEPTH})",
            column=node.pos + 1,
        )
    return size, depth


def referenced_names(node: Node, names: Names | None = None, *, skip_exists: bool = True) -> set[str]:
    """Metric and define names an expression uses (defines expanded when ``names`` is given)."""
    found: set[str] = set()

    def walk(n: Node, stack: tuple[str, ...]) -> None:
        if isinstance(n, Name):
            if names is not None and n.name in names.defines and n.name not in stack:
                walk(names.defines[n.name], stack + (n.name,))
            else:
                found.add(n.name)
        elif isinstance(n, Unary):
            walk(n.operand, stack)
        elif isinstance(n, (Binary, Compare)):
            walk(n.left, stack)
            walk(n.right, stack)
        elif isinstance(n, Call):
            if n.func == "exists" and skip_exists:
                return
            for arg in n.args:
                walk(arg, stack)

    walk(node, ())
    return found


# ---------------------------------------------------------------------------------------- evaluation

#: Looks a name up as a column: metric name → float64 array of one value per photo.
Lookup = Callable[[str], np.ndarray]


@dataclass
class Env:
    """What evaluation needs: a column lookup, the defines, region presence, and the row count."""

    lookup: Lookup
    defines: Mapping[str, Node]
    present: Callable[[str], np.ndarray]
    size: int


def evaluate(node: Node, env: Env, memo: MutableMapping[int, Any] | None = None) -> np.ndarray:
    """Evaluate a checked expression for every photo at once (float64 or bool array of ``env.size``).

    The one evaluator: tests, ``exposure rules`` and scoring all call it. Scoring passes `memo`, a mapping
    that receives every sub-expression's value under ``id(node)`` (a define's value under the ``Name``
    node that uses it), from which the reasons are written without evaluating anything again.
    """
    with np.errstate(all="ignore"):
        value = _eval(node, env, memo)
    return np.broadcast_to(value, (env.size,)) if np.ndim(value) == 0 else value


def _eval(node: Node, env: Env, memo: MutableMapping[int, Any] | None):
    value = _value(node, env, memo)
    if memo is not None:
        memo[id(node)] = value
    return value


def _value(node: Node, env: Env, memo: MutableMapping[int, Any] | None):
    if isinstance(node, Number):
        return np.float64(node.value)
    if isinstance(node, Bool):
        return np.bool_(node.value)
    if isinstance(node, Name):
        if node.name in env.defines:
            return _eval(env.defines[node.name], env, memo)
        return env.lookup(node.name)
    if isinstance(node, Unary):
        value = _eval(node.operand, env, memo)
        if node.op == "not":
            return np.logical_not(value)
        return -value if node.op == "-" else value
    if isinstance(node, Binary):
        left = _eval(node.left, env, memo)
        right = _eval(node.right, env, memo)
        if node.op == "and":
            return np.logical_and(left, right)
        if node.op == "or":
            return np.logical_or(left, right)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        return np.true_divide(left, right)
    if isinstance(node, Compare):
        return COMPARE[node.op](_eval(node.left, env, memo), _eval(node.right, env, memo))
    if isinstance(node, Call):
        if node.func == "exists":
            return env.present(node.args[0].name)  # type: ignore[union-attr]
        values = [_eval(arg, env, memo) for arg in node.args]
        if node.func == "known":
            return np.isfinite(values[0])
        if node.func == "abs":
            return np.abs(values[0])
        result = values[0]
        for other in values[1:]:
            # fmin/fmax ignore a NaN operand, like "the larger of the known values"
            result = np.fmin(result, other) if node.func == "min" else np.fmax(result, other)
        return result
    raise RuleError(f"unsupported expression element {type(node).__name__}")  # pragma: no cover


#: Comparison operator → vectorised function (``!=`` is false when either side is unknown).
COMPARE = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": lambda a, b: np.logical_and(np.not_equal(a, b), np.logical_and(np.isfinite(a), np.isfinite(b))),
}


# ------------------------------------------------------------------------------------------ rendering

_SYMBOL = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}


def to_source(node: Node) -> str:
    """Canonical text of an expression (parsing it again gives the same tree)."""
    return _source(node, 0)


def _source(node: Node, parent: int) -> str:
    if isinstance(node, Number):
        return format_number(node.value)
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call):
        return f"{node.func}({', '.join(_source(a, 0) for a in node.args)})"
    if isinstance(node, Unary):
        prec = _PRECEDENCE["not" if node.op == "not" else "neg"]
        inner = _source(node.operand, prec)
        text = f"not {inner}" if node.op == "not" else f"{node.op}{inner}"
    elif isinstance(node, Compare):
        prec = _PRECEDENCE["cmp"]
        text = f"{_source(node.left, prec + 1)} {node.op} {_source(node.right, prec + 1)}"
    else:
        prec = _PRECEDENCE[node.op]
        # left-associative: the right operand needs brackets at equal precedence
        text = f"{_source(node.left, prec)} {node.op} {_source(node.right, prec + 1)}"
    return f"({text})" if prec < parent else text


def format_number(value: float) -> str:
    """Short human form: 23.0 → '23', 0.125 → '0.125', 12.3456 → '12.3'."""
    if value is None or not math.isfinite(value):
        return "n/a" if value is None or math.isnan(value) else ("∞" if value > 0 else "−∞")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def negate_op(op: str) -> str:
    return _NEGATED[op]


def symbol(op: str) -> str:
    return _SYMBOL[op]
