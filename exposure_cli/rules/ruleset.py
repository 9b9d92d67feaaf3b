"""Rule sets: the :class:`RuleSet` interface, TOML rule files (score tables and deductions), and scoring.

A rule set turns the metric columns of many photos into three columns: a 0-100 score, a grade label and
the reasons. TOML rule sets come in two modes (see docs/RULES.md for the full schema):

* **table** (``[[rows]]``): the first row from the top whose ``when`` holds gives the score;
* **deductions** (``[[deductions]]``): start at ``start`` (100) and subtract ``points`` for every
  condition that holds, never below ``floor`` (0).

Python plugins subclass :class:`RuleSet` and implement :meth:`RuleSet.score`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..report.schema import RULE_SET_NAME, RULE_SET_NAME_HELP, is_rule_set_name
from ..stats import REGIONS, Thresholds
from . import expr
from .expr import BOOL, NUM, Env, Names, Node, RuleError
from .metrics import METRICS, MetricFrame, format_value, metric_types

#: Allowed rule set names: they become column suffixes (``score_<name>``). One grammar with the writers:
#: :data:`exposure_cli.report.schema.RULE_SET_NAME` (use ``fullmatch``).
NAME_RE = RULE_SET_NAME
#: A rule file larger than this is refused before it is parsed (the presets are a few KB).
MAX_RULE_FILE_BYTES = 1 << 20
#: At most this many [[rows]] or [[deductions]], and this many [define] names, in one rule set.
MAX_RULE_ENTRIES = 1000
MAX_DEFINES = 4096
_DEFINE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)

#: Default grade labels: minimum score → label, best first.
DEFAULT_GRADES: tuple[tuple[float, str], ...] = ((90.0, "A"), (75.0, "B"), (60.0, "C"), (40.0, "D"), (0.0, "F"))

#: What a condition does when it needs a region the photo does not have.
MISSING_POLICIES = ("skip", "fail") + tuple(f"use_{r}" for r in REGIONS)


@dataclass
class ScoreResult:
    """Scores of N photos under one rule set."""

    scores: np.ndarray  # float64, 0-100, NaN = not scored
    grades: list[str]
    reasons: list[str]


class RuleSet(ABC):
    """Anything that scores photos from their metrics. Plugins subclass this.

    Attributes:
        name: Column suffix and lookup name.
        description: One line for ``exposure rules list``.
        thresholds: Pixel thresholds the rule set wants (``None`` fields: the scan's).
        grades: (minimum score, label) pairs, best first.
    """

    name: str = ""
    description: str = ""
    thresholds: Mapping[str, float] = {}
    grades: Sequence[tuple[float, str]] = DEFAULT_GRADES
    origin: str = "built-in"

    def effective_thresholds(self, scan: Thresholds) -> Thresholds:
        """The scan's thresholds with this rule set's overrides applied."""
        values = scan.as_dict()
        values.update({k: float(v) for k, v in dict(self.thresholds).items()})
        return Thresholds(**values)

    @abstractmethod
    def score(self, frame: MetricFrame) -> ScoreResult:
        """Score every photo of ``frame`` (already seen through :meth:`effective_thresholds`)."""

    def grade(self, score: float) -> str:
        if score is None or math.isnan(score):
            return ""
        for minimum, label in self.grades:
            if score >= minimum:
                return label
        return self.grades[-1][1] if self.grades else ""

    def explain(self, frame: MetricFrame, index: int) -> list[dict[str, Any]]:
        """Every condition with its values and whether it fired, for photo ``index``.

        The default, for plugins, returns only the final result.
        """
        result = self.score(frame)
        return [
            {
                "rule": "result",
                "condition": "",
                "fired": True,
                "effect": expr.format_number(float(result.scores[index])),
                "details": [result.reasons[index]],
            }
        ]

    def describe(self) -> str:
        """Human-readable description for ``exposure rules show``."""
        return f"{self.name}: {self.description}\n(Python rule set from {self.origin})"


# ------------------------------------------------------------------------------------------- TOML sets


@dataclass
class Condition:
    """One row or deduction of a TOML rule set."""

    index: int
    field: str  # "rows[2]" / "deductions[0]"
    when: Node
    when_source: str
    label: str
    on_missing: str
    line: int | None
    score: float | None = None  # table rows
    points: Node | None = None  # deductions (number or expression)
    points_source: str = ""
    regions: tuple[str, ...] = ()  # regions whose metrics the condition (and its points) read


@dataclass
class _Outcome:
    fired: np.ndarray
    missing: dict[str, np.ndarray]
    memo: "_Memo"
    points: np.ndarray | None = None
    fallback: str | None = None
    fallback_present: np.ndarray | None = None


class TomlRuleSet(RuleSet):
    """A rule set read from a TOML file (see :func:`load_rule_file`)."""

    def __init__(
        self,
        *,
        name: str,
        description: str,
        mode: str,
        conditions: list[Condition],
        thresholds: Mapping[str, float],
        grades: Sequence[tuple[float, str]],
        defines: Mapping[str, Node],
        define_sources: Mapping[str, str],
        on_missing: str,
        otherwise_score: float = 0.0,
        otherwise_label: str = "",
        start: float = 100.0,
        floor: float = 0.0,
        source: str = "",
        origin: str = "built-in",
    ) -> None:
        self.name = name
        self.description = description
        self.mode = mode
        self.conditions = conditions
        self.thresholds = dict(thresholds)
        self.grades = tuple(grades)
        self.defines = dict(defines)
        self.define_sources = dict(define_sources)
        self.on_missing = on_missing
        self.otherwise_score = float(otherwise_score)
        self.otherwise_label = otherwise_label
        self.start = float(start)
        self.floor = float(floor)
        self.source = source
        self.origin = origin

    # -- evaluation helpers
    def _env(self, frame: MetricFrame, condition: Condition) -> tuple[Env, dict[str, np.ndarray], str | None]:
        missing = {r: ~frame.present(r) for r in condition.regions if r != "global"}
        policy = condition.on_missing
        fallback = policy[4:] if policy.startswith("use_") else None

        def lookup(name: str) -> np.ndarray:
            values = frame.metric(name)
            region = METRICS[name].region
            # use_R has no fallback for R itself: a condition that reads R's own metrics while R is absent
            # reads them as missing (every comparison with them is false), never global's (docs/RULES.md,
            # "Regions that are not there"; test_use_region_reading_its_own_region_…)
            if fallback is None or region is None or region == "global" or region == fallback:
                return values
            metric = name.partition(".")[2]
            substitute = frame.metric(f"{fallback}.{metric}")
            if fallback != "global":  # another region read in R's place while R is absent too reads global
                substitute = np.where(frame.present(fallback), substitute, frame.metric(f"global.{metric}"))
            return np.where(frame.present(region), values, substitute)

        env = Env(lookup=lookup, defines=self.defines, present=frame.present, size=frame.size)
        return env, missing, fallback

    def _evaluate(self, frame: MetricFrame, condition: Condition) -> _Outcome:
        env, missing, fallback = self._env(frame, condition)
        memo = _Memo()
        fired = np.broadcast_to(np.asarray(expr.evaluate(condition.when, env, memo), dtype=bool), (frame.size,))
        points = None
        if condition.points is not None:
            value = expr.evaluate(condition.points, env, memo)
            points = np.broadcast_to(np.asarray(value, dtype=np.float64), (frame.size,))
        fallback_present = frame.present(fallback) if fallback else None
        return _Outcome(fired=fired, missing=missing, memo=memo, points=points, fallback=fallback,
                        fallback_present=fallback_present)

    def _any_missing(self, outcome: _Outcome, size: int) -> np.ndarray:
        result = np.zeros(size, dtype=bool)
        for mask in outcome.missing.values():
            result |= mask
        return result

    # -- scoring
    def score(self, frame: MetricFrame) -> ScoreResult:
        outcomes = [self._evaluate(frame, c) for c in self.conditions]
        if self.mode == "table":
            return self._score_table(frame, outcomes)
        return self._score_deductions(frame, outcomes)

    def _score_table(self, frame: MetricFrame, outcomes: list[_Outcome]) -> ScoreResult:
        n = frame.size
        chosen = np.full(n, -1, dtype=np.int64)
        failed = np.zeros(n, dtype=bool)
        decided = np.zeros(n, dtype=bool)
        skipped: list[np.ndarray] = []
        for k, (condition, outcome) in enumerate(zip(self.conditions, outcomes)):
            missing = self._any_missing(outcome, n)
            if condition.on_missing == "fail":
                fail_now = ~decided & missing
                failed |= fail_now
                chosen[fail_now] = k
                decided |= fail_now
                take = ~decided & outcome.fired
            elif condition.on_missing == "skip":
                skipped.append(~decided & missing)
                take = ~decided & outcome.fired & ~missing
            else:
                take = ~decided & outcome.fired
            if condition.on_missing != "skip":
                skipped.append(np.zeros(n, dtype=bool))
            chosen[take] = k
            decided |= take
        row_scores = np.array([c.score for c in self.conditions] + [self.otherwise_score], dtype=np.float64)
        scores = row_scores[np.where(chosen >= 0, chosen, len(self.conditions))]
        scores = np.where(failed, 0.0, scores)
        reasons = []
        for i in range(n):
            notes = [
                f"{self.conditions[k].field} skipped: no {', '.join(_missing_at(outcomes[k], i))} found"
                for k in range(len(self.conditions))
                if skipped[k][i] and (chosen[i] < 0 or k < chosen[i])
            ]
            k = int(chosen[i])
            if k < 0:
                text = f"no row matched → {expr.format_number(self.otherwise_score)}"
                if self.otherwise_label:
                    text += f" ({self.otherwise_label})"
            elif failed[i]:
                condition = self.conditions[k]
                text = (
                    f"{condition.field} needs {', '.join(_missing_at(outcomes[k], i))}, which was not found "
                    f"(on_missing_region = \"fail\") → 0"
                )
            else:
                condition = self.conditions[k]
                text = self._fired_text(condition, outcomes[k], i) + f" → {expr.format_number(condition.score)}"
                if condition.label:
                    text += f" ({condition.label})"
            reasons.append("; ".join(notes + [text]))
        return ScoreResult(scores, [self.grade(s) for s in scores], reasons)

    def _score_deductions(self, frame: MetricFrame, outcomes: list[_Outcome]) -> ScoreResult:
        n = frame.size
        total = np.zeros(n, dtype=np.float64)
        failed = np.zeros(n, dtype=bool)
        applied: list[np.ndarray] = []
        for condition, outcome in zip(self.conditions, outcomes):
            missing = self._any_missing(outcome, n)
            fired = outcome.fired.copy()
            if condition.on_missing == "fail":
                failed |= missing
                fired &= ~missing
            elif condition.on_missing == "skip":
                fired &= ~missing
            points = np.nan_to_num(outcome.points, nan=0.0) if outcome.points is not None else np.zeros(n)
            total += np.where(fired, points, 0.0)
            applied.append(fired)
        # rounded to 1e-6 so that 100 − 18.4 − 30 − 11.5 reads 40.1, not 40.099999999999994
        scores = np.round(np.clip(self.start - total, self.floor, 100.0), 6)
        scores = np.where(failed, 0.0, scores)
        reasons = []
        for i in range(n):
            parts = []
            for k, (condition, outcome) in enumerate(zip(self.conditions, outcomes)):
                missing_here = _missing_at(outcome, i)
                if failed[i] and missing_here and condition.on_missing == "fail":
                    parts.append(
                        f"{condition.field} needs {', '.join(missing_here)}, which was not found "
                        f"(on_missing_region = \"fail\") → 0"
                    )
                elif applied[k][i]:
                    points = float(outcome.points[i]) if outcome.points is not None else 0.0
                    sign = "−" if points >= 0 else "+"
                    text = self._fired_text(condition, outcome, i) + f" → {sign}{expr.format_number(abs(points))}"
                    if condition.label:
                        text += f" ({condition.label})"
                    parts.append(text)
                elif missing_here and condition.on_missing == "skip":
                    parts.append(f"{condition.field} skipped: no {', '.join(missing_here)} found")
            if not any("→" in p for p in parts):
                parts.append(f"no deduction applies → {expr.format_number(float(scores[i]))}")
            reasons.append("; ".join(parts))
        return ScoreResult(scores, [self.grade(s) for s in scores], reasons)

    # -- reasons
    def _fired_text(self, condition: Condition, outcome: _Outcome, i: int) -> str:
        leaves = _leaves(condition.when, outcome.memo, i, True, self.defines)
        texts = []
        for node, want, define in leaves:
            text = _leaf_text(node, want, outcome.memo, i)
            # a comparison of a computed value reads better under the name the rule file gave it
            if define and text and isinstance(node, expr.Compare) and not isinstance(node.left, expr.Name):
                text = f"{define}: {text}"
            texts.append(text)
        texts = [t for t in texts if t]
        text = " and ".join(texts) if texts else "always"
        missing = _missing_at(outcome, i)
        if missing and outcome.fallback:
            used = outcome.fallback
            if used != "global" and not outcome.fallback_present[i]:
                missing, used = missing + [used], "global"  # the fallback is absent too
            text += f" (no {', '.join(missing)} found: {used} used instead)"
        return text

    def explain(self, frame: MetricFrame, index: int) -> list[dict[str, Any]]:
        sub = frame.row(index)
        result = self.score(sub)
        lines: list[dict[str, Any]] = []
        decided = False
        for condition in self.conditions:
            outcome = self._evaluate(sub, condition)
            missing_any = bool(self._any_missing(outcome, 1)[0])
            fired = bool(outcome.fired[0]) and not (missing_any and condition.on_missing in ("skip", "fail"))
            if self.mode == "table":
                # the first row that holds decides; a missing region under "fail" decides too (score 0)
                decisive = not decided and (fired or (missing_any and condition.on_missing == "fail"))
                decided = decided or decisive
            else:
                decisive = fired
            leaves = _all_leaves(condition.when, self.defines)
            details = []
            for node in leaves:
                truth = bool(outcome.memo.at(node, 0))
                details.append(("✓ " if truth else "✗ ") + _leaf_text(node, True, outcome.memo, 0, plain=True))
            missing = _missing_at(outcome, 0)
            if missing:
                details.append(
                    f"no {', '.join(missing)} found: on_missing_region = {condition.on_missing!r}"
                )
            if self.mode == "table":
                effect = expr.format_number(condition.score)
            else:
                points = float(outcome.points[0])  # every [[deductions]] entry has points
                # the sign as the reasons write it: a negative deduction is a bonus, "+5" (not "−-5")
                effect = ("−" if points >= 0 else "+") + expr.format_number(abs(points))
            lines.append(
                {
                    "rule": condition.field + (f" ({condition.label})" if condition.label else ""),
                    "condition": condition.when_source,
                    "fired": fired,
                    "decisive": decisive,
                    "effect": effect,
                    "details": details,
                }
            )
        lines.append(
            {
                "rule": "result",
                "condition": "",
                "fired": True,
                "effect": f"{expr.format_number(float(result.scores[0]))} ({result.grades[0]})",
                "details": [result.reasons[0]],
            }
        )
        return lines

    def describe(self) -> str:
        lines = [f"{self.name}: {self.description}", f"mode: {self.mode}   origin: {self.origin}"]
        if self.thresholds:
            lines.append("thresholds: " + ", ".join(f"{k} = {v}" for k, v in self.thresholds.items()))
        else:
            lines.append("thresholds: the scan's")
        lines.append(f"on_missing_region: {self.on_missing}")
        for name, source in self.define_sources.items():
            lines.append(f"define {name} = {source}")
        if self.mode == "deductions":
            lines.append(f"start {expr.format_number(self.start)}, floor {expr.format_number(self.floor)}")
        for c in self.conditions:
            effect = (
                f"{expr.format_number(c.score):>5}" if self.mode == "table" else f"−({c.points_source})"
            )
            label = f"  # {c.label}" if c.label else ""
            lines.append(f"  {effect}  when {c.when_source}{label}")
        if self.mode == "table":
            lines.append(f"  {expr.format_number(self.otherwise_score):>5}  otherwise  # {self.otherwise_label}")
        lines.append("grades: " + ", ".join(f"{label} ≥ {expr.format_number(m)}" for m, label in self.grades))
        return "\n".join(lines)


def _missing_at(outcome: _Outcome, i: int) -> list[str]:
    return [region for region, mask in outcome.missing.items() if mask[i]]


class _Memo(dict):
    """id(node) → value array, plus per-node Python lists for fast per-photo reads when writing reasons."""

    def __init__(self) -> None:
        super().__init__()
        self._lists: dict[int, Any] = {}

    def at(self, node: Node, i: int):
        key = id(node)
        values = self._lists.get(key)
        if values is None:
            raw = self.get(key)
            if raw is None:
                return None
            arr = np.asarray(raw)
            values = arr.item() if arr.ndim == 0 else arr.tolist()
            self._lists[key] = values
        return values[i] if isinstance(values, list) else values


def _at(memo: "_Memo", node: Node, i: int):
    return memo.at(node, i)


def _leaves(
    node: Node, memo, i: int, want: bool, defines: Mapping[str, Node], define: str | None = None
) -> list[tuple[Node, bool, str | None]]:
    """The comparisons (and exists/known calls) that make ``node`` evaluate to ``want`` for photo ``i``,
    each with the name of the definition it came from (if any)."""
    if isinstance(node, expr.Name) and node.name in defines:
        return _leaves(defines[node.name], memo, i, want, defines, node.name)
    if isinstance(node, expr.Unary) and node.op == "not":
        return _leaves(node.operand, memo, i, not want, defines, define)
    if isinstance(node, expr.Binary) and node.op in ("and", "or"):
        conjunctive = (node.op == "and") == want  # all children matter
        out: list[tuple[Node, bool, str | None]] = []
        for child in (node.left, node.right):
            if conjunctive or bool(_at(memo, child, i)) == want:
                out.extend(_leaves(child, memo, i, want, defines, define))
                if not conjunctive:
                    break  # one witness is enough for "or" holding / "and" failing
        return out
    return [(node, want, define)]


def _all_leaves(node: Node, defines: Mapping[str, Node]) -> list[Node]:
    if isinstance(node, expr.Name) and node.name in defines:
        return _all_leaves(defines[node.name], defines)
    if isinstance(node, expr.Unary) and node.op == "not":
        return _all_leaves(node.operand, defines)
    if isinstance(node, expr.Binary) and node.op in ("and", "or"):
        return _all_leaves(node.left, defines) + _all_leaves(node.right, defines)
    return [node]


def _unit_of(node: Node) -> str:
    if isinstance(node, expr.Name) and node.name in METRICS:
        return METRICS[node.name].unit
    if isinstance(node, expr.Call) and node.func == "abs" and node.args:
        unit = _unit_of(node.args[0])
        return "r+" if unit == "r" else unit
    if isinstance(node, expr.Binary) and node.op in ("+", "-"):
        # a sum or difference of percentages is a percentage; of residuals, just a number
        units = {_unit_of(node.left), _unit_of(node.right)} - {""}
        return "%" if units == {"%"} else ""
    return ""


def _side_text(node: Node, value, unit: str) -> str:
    shown = format_value(value, unit) if unit not in ("r+",) else format_value(value, "")
    if isinstance(node, expr.Number):
        return shown
    if isinstance(node, expr.Name) and node.name in METRICS:
        return f"{METRICS[node.name].description} {shown}"
    return f"{expr.to_source(node)} = {shown}"


def _leaf_text(node: Node, want: bool, memo, i: int, *, plain: bool = False) -> str:
    """One comparison as a sentence with its values: 'global over-exposed area 23 % ≥ 20 %'."""
    if isinstance(node, expr.Compare):
        unit = _unit_of(node.left) or _unit_of(node.right)
        op = node.op if want else expr.negate_op(node.op)
        left = _side_text(node.left, _at(memo, node.left, i), unit)
        right = _side_text(node.right, _at(memo, node.right, i), unit)
        return f"{left} {expr.symbol(op)} {right}"
    if isinstance(node, expr.Call) and node.func == "exists":
        region = node.args[0].name  # type: ignore[union-attr]
        holds = bool(_at(memo, node, i))
        if plain:
            return f"exists({region}): {'found' if holds else 'not found'}"
        return f"{region} found" if want else f"no {region} found"
    if isinstance(node, expr.Call) and node.func == "known":
        inner = node.args[0]
        label = METRICS[inner.name].description if isinstance(inner, expr.Name) and inner.name in METRICS else expr.to_source(inner)
        value = _at(memo, inner, i)
        if plain:
            return f"known({expr.to_source(inner)}): {format_value(value, _unit_of(inner))}"
        return f"{label} known ({format_value(value, _unit_of(inner))})" if want else f"{label} unknown"
    if isinstance(node, expr.Bool):
        return "" if not plain else ("true" if node.value else "false")
    return f"{expr.to_source(node)}" + ("" if want else " is false")


# --------------------------------------------------------------------------------------------- loader

_TOP_KEYS = (
    "name",
    "description",
    "schema",
    "thresholds",
    "on_missing_region",
    "define",
    "grades",
    "rows",
    "otherwise",
    "deductions",
    "start",
    "floor",
)
_ROW_KEYS = ("score", "when", "label", "on_missing_region")
_DEDUCTION_KEYS = ("points", "when", "label", "on_missing_region")


class _Lines:
    """Finds the line of a key in TOML text (tomllib does not report positions).

    Indexed once, so each lookup costs the size of one section, not of the file: validation stays linear
    in the number of rows.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        # (line number, table name, is array) for every header
        self.headers: list[tuple[int, str, bool]] = []
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                self.headers.append((number, match.group(2).strip(), match.group(1) == "[["))
        self._first: dict[str, int] = {}
        self._arrays: dict[str, list[int]] = {}
        self._next: dict[int, int] = {}
        for i, (number, table, is_array) in enumerate(self.headers):
            self._first.setdefault(table, number)
            if is_array:
                self._arrays.setdefault(table, []).append(number)
            self._next[number] = self.headers[i + 1][0] if i + 1 < len(self.headers) else len(self.lines) + 1
        self._anywhere_cache: dict[str, int | None] = {}

    def _section(self, table: str | None, index: int | None) -> tuple[int, int] | None:
        if table is None:
            end = self.headers[0][0] if self.headers else len(self.lines) + 1
            return 1, end
        if index is not None:
            arrays = self._arrays.get(table, [])
            if index >= len(arrays):
                return None
            start = arrays[index]
        elif table in self._first:
            start = self._first[table]
        else:
            return None
        return start, self._next[start]

    def find(self, table: str | None, index: int | None = None, key: str | None = None) -> int | None:
        section = self._section(table, index)
        if section is None:
            if table is not None and key is None:
                return None
            return self._anywhere(key or table or "")
        start, end = section
        if key is None:
            return start
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(start, end):
            if pattern.match(self.lines[number - 1]):
                return number
        return start if table is not None else self._anywhere(key)

    def entry(self, name: str) -> int | None:
        """The line where top-level ``name`` is given: its first ``[[name]]`` or ``[name]`` header, else its
        ``name = …`` key (a value or an inline array)."""
        if name in self._first:
            return self._first[name]
        return self.find(None, key=name)

    def _anywhere(self, key: str) -> int | None:
        if key not in self._anywhere_cache:
            pattern = re.compile(rf"(^|[\s{{,])[\"']?{re.escape(key)}[\"']?\s*=")
            self._anywhere_cache[key] = next(
                (number for number, line in enumerate(self.lines, 1) if pattern.search(line)), None)
        return self._anywhere_cache[key]


def load_rule_file(path: str | Path, *, origin: str | None = None) -> TomlRuleSet:
    """Read and validate a TOML rule file. Raises :class:`RuleError` naming file, field and line."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_RULE_FILE_BYTES + 1)
        if len(data) > MAX_RULE_FILE_BYTES:
            raise RuleError(f"rule file is larger than {MAX_RULE_FILE_BYTES // 1024} KB; a rule set has at most "
                            f"{MAX_RULE_ENTRIES} rows or deductions", file=str(path))
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"cannot read rule file: {exc}", file=str(path)) from None
    return parse_rule_text(text, file=str(path), origin=origin or f"file {path}")


def parse_rule_text(text: str, *, file: str = "<rules>", origin: str = "text") -> TomlRuleSet:
    """Validate TOML rule-set text (see :func:`load_rule_file`)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    if len(text) > MAX_RULE_FILE_BYTES:
        raise RuleError(f"rule text is longer than {MAX_RULE_FILE_BYTES // 1024} KB; a rule set has at most "
                        f"{MAX_RULE_ENTRIES} rows or deductions", file=file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"line (\d+)", message)
        raise RuleError(f"not valid TOML: {message}", file=file, line=int(match.group(1)) if match else None) from None
    return _build(data, _Lines(text), file, origin)


def _build(data: dict[str, Any], lines: _Lines, file: str, origin: str) -> TomlRuleSet:
    from ..registry import suggest

    def fail(message: str, field: str, line: int | None = None) -> RuleError:
        return RuleError(message, file=file, field=field, line=line)

    for key in data:
        if key not in _TOP_KEYS:
            raise fail(f"unknown key {key!r}{suggest(key, _TOP_KEYS)}", key, lines.find(None, key=key))

    name = data.get("name")
    if not is_rule_set_name(name):
        raise fail(
            f"'name' is required: {RULE_SET_NAME_HELP} (it becomes the column suffix score_<name>)",
            "name",
            lines.find(None, key="name"),
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("'description' must be text", "description", lines.find(None, key="description"))
    schema = data.get("schema", 1)
    if schema != 1:
        raise fail(f"unsupported schema {schema!r}; this version reads schema = 1", "schema", lines.find(None, key="schema"))

    thresholds = _thresholds(data.get("thresholds", {}), lines, fail)
    on_missing = _policy(data.get("on_missing_region", "skip"), "on_missing_region", lines.find(None, key="on_missing_region"), fail)
    grades = _grades(data.get("grades"), lines, fail)

    # defines: name → expression; parsed first so conditions can use them
    raw_defines = data.get("define", {})
    if not isinstance(raw_defines, dict):
        raise fail("'define' must be a table of name = \"expression\"", "define", lines.find("define"))
    if len(raw_defines) > MAX_DEFINES:
        raise fail(f"at most {MAX_DEFINES} [define] names", "define", lines.find("define"))
    define_sources: dict[str, str] = {}
    defines: dict[str, Node] = {}
    reserved = set(expr.KEYWORDS) | set(REGIONS) | set(expr.FUNCTIONS) | {"image", "exif"}
    for key, source in raw_defines.items():
        field = f"define.{key}"
        line = lines.find("define", key=key)
        if not _DEFINE_NAME.fullmatch(key) or key in reserved:
            raise fail(f"{key!r} cannot be defined: use a plain name that is not a region, function or keyword", field, line)
        if not isinstance(source, str):
            raise fail("a definition must be an expression in quotes", field, line)
        defines[key] = _parse(source, field, line, file)
        define_sources[key] = source
    names = Names(metrics=metric_types(), defines=defines, regions=REGIONS)
    for key, node in defines.items():
        _check(node, names, None, f"define.{key}", lines.find("define", key=key), file)

    has_rows = "rows" in data
    has_deductions = "deductions" in data
    if has_rows == has_deductions:
        raise fail(
            "a rule set needs either [[rows]] (a score table) or [[deductions]] (start at 100, subtract), not "
            + ("both" if has_rows else "neither"),
            "rows" if has_rows else "deductions",
            lines.entry("rows") if has_rows else None,
        )
    mode = "table" if has_rows else "deductions"
    entries = data["rows" if has_rows else "deductions"]
    table = "rows" if has_rows else "deductions"
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise fail(f"'{table}' must be a non-empty list of tables ([[{table}]])", table, lines.entry(table))
    if len(entries) > MAX_RULE_ENTRIES:
        raise fail(f"at most {MAX_RULE_ENTRIES} [[{table}]] in one rule set (this one has {len(entries)})", table,
                   lines.find(table, MAX_RULE_ENTRIES))
    allowed = _ROW_KEYS if has_rows else _DEDUCTION_KEYS
    conditions: list[Condition] = []
    for index, entry in enumerate(entries):
        field = f"{table}[{index}]"
        header = lines.find(table, index)
        for key in entry:
            if key not in allowed:
                raise fail(f"unknown key {key!r}{suggest(key, allowed)}", f"{field}.{key}", lines.find(table, index, key))
        when_line = lines.find(table, index, "when") or header
        when_source = entry.get("when")
        if not isinstance(when_source, str):
            raise fail("'when' is required: a condition in quotes, e.g. when = \"global.bad_pct < 5\"", f"{field}.when", when_line)
        when = _parse(when_source, f"{field}.when", when_line, file)
        _check(when, names, BOOL, f"{field}.when", when_line, file)
        label = entry.get("label", "")
        if not isinstance(label, str):
            raise fail("'label' must be text", f"{field}.label", lines.find(table, index, "label"))
        policy = _policy(
            entry.get("on_missing_region", on_missing), f"{field}.on_missing_region", lines.find(table, index, "on_missing_region"), fail
        )
        condition = Condition(index, field, when, when_source, label, policy, when_line)
        used = set(expr.referenced_names(when, names))
        if has_rows:
            score = entry.get("score")
            line = lines.find(table, index, "score") or header
            if not _is_number(score) or not 0 <= float(score) <= 100:
                raise fail("'score' is required: a number from 0 to 100", f"{field}.score", line)
            condition.score = float(score)
        else:
            points = entry.get("points")
            line = lines.find(table, index, "points") or header
            if _is_number(points):
                condition.points = expr.Number(float(points), 0)
                condition.points_source = expr.format_number(float(points))
            elif isinstance(points, str):
                condition.points = _parse(points, f"{field}.points", line, file)
                _check(condition.points, names, NUM, f"{field}.points", line, file)
                condition.points_source = points
                used |= expr.referenced_names(condition.points, names)
            else:
                raise fail("'points' is required: a number or a numeric expression in quotes", f"{field}.points", line)
        condition.regions = tuple(r for r in REGIONS if any(n.startswith(r + ".") for n in used))
        conditions.append(condition)

    otherwise_score, otherwise_label = 0.0, ""
    if "otherwise" in data:
        if not has_rows:
            raise fail("'otherwise' belongs to score tables ([[rows]])", "otherwise", lines.find(None, key="otherwise"))
        otherwise = data["otherwise"]
        line = lines.find("otherwise") or lines.find(None, key="otherwise")
        if _is_number(otherwise):
            otherwise_score = float(otherwise)
        elif isinstance(otherwise, dict):
            for key in otherwise:
                if key not in ("score", "label"):
                    raise fail(f"unknown key {key!r}{suggest(key, ('score', 'label'))}", f"otherwise.{key}", line)
            otherwise_score = otherwise.get("score", 0.0)
            otherwise_label = str(otherwise.get("label", ""))
        else:
            otherwise_score = None  # type: ignore[assignment]
        if not _is_number(otherwise_score) or not 0 <= float(otherwise_score) <= 100:
            raise fail("'otherwise' must be a score from 0 to 100 or {score = …, label = …}", "otherwise", line)
    start = data.get("start", 100.0)
    floor = data.get("floor", 0.0)
    for key, value in (("start", start), ("floor", floor)):
        if key in data and not has_deductions:
            raise fail(f"'{key}' belongs to deduction rule sets ([[deductions]])", key, lines.find(None, key=key))
        if not _is_number(value) or not 0 <= float(value) <= 100:
            raise fail(f"'{key}' must be a number from 0 to 100", key, lines.find(None, key=key))
    if float(floor) > float(start):
        raise fail("'floor' must not exceed 'start'", "floor", lines.find(None, key="floor"))

    return TomlRuleSet(
        name=name,
        description=description,
        mode=mode,
        conditions=conditions,
        thresholds=thresholds,
        grades=grades,
        defines=defines,
        define_sources=define_sources,
        on_missing=on_missing,
        otherwise_score=float(otherwise_score),
        otherwise_label=otherwise_label,
        start=float(start),
        floor=float(floor),
        source=file,
        origin=origin,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _parse(source: str, field: str, line: int | None, file: str) -> Node:
    try:
        return expr.parse(source)
    except RuleError as exc:
        raise exc.located(file=file, field=field, line=line) from None


def _check(node: Node, names: Names, expected: str | None, field: str, line: int | None, file: str) -> None:
    try:
        expr.measure(node, names.defines)  # first: it bounds how deep check() has to recurse
        expr.check(node, names, expected=expected)
    except RuleError as exc:
        raise exc.located(file=file, field=field, line=line) from None
    except RecursionError:
        raise RuleError(
            "expression is nested too deeply (through its definitions)", file=file, field=field, line=line
        ) from None


def _policy(value: Any, field: str, line: int | None, fail) -> str:
    if value in MISSING_POLICIES:
        return str(value)
    from ..registry import suggest

    hint = suggest(str(value), MISSING_POLICIES)
    raise fail(f"on_missing_region must be one of {', '.join(MISSING_POLICIES)}, not {value!r}{hint}", field, line)


def _thresholds(raw: Any, lines: _Lines, fail) -> dict[str, float]:
    if not isinstance(raw, dict):
        # `[[thresholds]]` has a header; `thresholds = 5` is a key of the top level
        line = lines.find("thresholds") or lines.find(None, key="thresholds")
        raise fail("'thresholds' must be a table: [thresholds] over = 0.1 …", "thresholds", line)
    out: dict[str, float] = {}
    for key, value in raw.items():
        line = lines.find("thresholds", key=key)
        if key not in ("over", "under", "severe"):
            from ..registry import suggest

            raise fail(f"unknown threshold {key!r}{suggest(key, ('over', 'under', 'severe'))}", f"thresholds.{key}", line)
        if not _is_number(value) or not 0 < float(value) <= 1:
            raise fail(
                "a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 grey levels), not a percentage",
                f"thresholds.{key}",
                line,
            )
        out[key] = float(value)
    return out


def _grades(raw: Any, lines: _Lines, fail) -> tuple[tuple[float, str], ...]:
    if raw is None:
        return DEFAULT_GRADES
    pairs: list[tuple[float, str]] = []
    if isinstance(raw, dict):  # [grades] A = 90
        for label, minimum in raw.items():
            if not _is_number(minimum):
                raise fail("each grade is label = minimum score", f"grades.{label}", lines.find("grades", key=label))
            pairs.append((float(minimum), str(label)))
    elif isinstance(raw, list):  # [[grades]] min = 90, label = "A"
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or not _is_number(item.get("min")) or not isinstance(item.get("label"), str):
                raise fail("each [[grades]] entry needs min = <score> and label = \"…\"", f"grades[{index}]", lines.find("grades", index))
            pairs.append((float(item["min"]), item["label"]))
    else:
        # neither a table nor a list of tables: `grades = …`, a key of the top level
        raise fail("'grades' must be a table (label = minimum score)", "grades", lines.find(None, key="grades"))
    if not pairs:
        raise fail("'grades' must name at least one grade", "grades", lines.find("grades"))
    pairs.sort(key=lambda p: -p[0])
    return tuple(pairs)
