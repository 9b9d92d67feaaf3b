"""Vendor scoring rules: rule sets turn per-region statistics into 0-100 scores with reasons.

The scan pipeline calls::

    rule_sets = load_rule_sets(["portrait", "./acme.toml"])     # once per scan
    row.update(score_row(rule_sets, row, scan_thresholds))        # per photo

and ``exposure rescore`` calls :func:`score_frame` on a whole report at once. Rule sets are looked up in
:data:`RULE_SETS` (built-in presets from ``rules/presets/*.toml`` plus plugins from the entry-point group
``exposure_cli.rules``, loaded at the first lookup) or read from a TOML file path. See docs/RULES.md.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..registry import Registry, RegistryError
from ..report.schema import RULE_SET_NAME_HELP, is_rule_set_name
from ..stats import Thresholds
from .expr import RuleError
from .metrics import METRICS, MetricFrame, thresholds_from_metadata
from .ruleset import RuleSet, ScoreResult, TomlRuleSet, load_rule_file, parse_rule_text

#: Entry-point group for rule-set plugins. An entry point names a RuleSet subclass, a RuleSet instance,
#: or a zero-argument callable returning a RuleSet.
ENTRY_POINT_GROUP = "exposure_cli.rules"


def _preset_factory(filename: str) -> Callable[[], RuleSet]:
    def load() -> RuleSet:
        text = resources.files(__package__).joinpath("presets", filename).read_text(encoding="utf-8")
        return parse_rule_text(text, file=f"preset {filename}", origin="built-in preset")

    return load


def build_registry() -> Registry[Any]:
    """A fresh registry holding the built-in presets (plugins join at its first lookup)."""
    registry: Registry[Any] = Registry("rule set", ENTRY_POINT_GROUP)
    for entry in sorted(resources.files(__package__).joinpath("presets").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            registry.register(entry.name[: -len(".toml")], _preset_factory(entry.name), origin="built-in preset")
    return registry


#: Rule-set name → RuleSet, RuleSet subclass or factory. Use :func:`get_rule_set` to get an instance.
RULE_SETS: Registry[Any] = build_registry()

#: The built-in preset names, in documentation order.
PRESETS = ("default", "portrait", "landscape-strict", "street", "night", "ecommerce")


def _instantiate(name: str, obj: Any, origin: str) -> RuleSet:
    if isinstance(obj, RuleSet):
        rule_set = obj
    elif callable(obj):
        rule_set = obj()
    else:
        rule_set = None
    if not isinstance(rule_set, RuleSet):
        raise RuleError(
            f"rule set {name!r} from {origin} is not a RuleSet (got {type(rule_set if rule_set is not None else obj).__name__}); "
            "an entry point must name a RuleSet subclass, instance or factory"
        )
    if not rule_set.name:
        rule_set.name = name
    if not is_rule_set_name(rule_set.name):
        raise RuleError(f"rule set from {origin} is named {rule_set.name!r}: a name is {RULE_SET_NAME_HELP} "
                        "(it becomes the column suffix score_<name>)")
    if rule_set.origin == "built-in" and origin != "built-in preset":
        rule_set.origin = origin
    return rule_set


def get_rule_set(name: str) -> RuleSet:
    """The preset or plugin registered as ``name`` (unknown names raise RegistryError with suggestions)."""
    obj = RULE_SETS.get(name)
    return _instantiate(name, obj, RULE_SETS.origin(name))


def _looks_like_path(spec: str) -> bool:
    # a name never contains a path separator or ends in .toml; a file called "portrait" stays the preset
    return spec.lower().endswith(".toml") or "/" in spec or "\\" in spec


def load_rule_set(spec: str) -> RuleSet:
    """One rule set from a preset/plugin name or a path to a ``.toml`` file."""
    if _looks_like_path(spec):
        if not Path(spec).is_file():
            raise RuleError(f"rule file not found: {spec}", file=spec)
        return load_rule_file(spec)
    return get_rule_set(spec)


def load_rule_sets(specs: Iterable[str]) -> list[RuleSet]:
    """Rule sets for ``--rules`` options; two with the same name (= same columns) are an error."""
    rule_sets: list[RuleSet] = []
    seen: dict[str, str] = {}
    for spec in specs:
        rule_set = load_rule_set(spec)
        if rule_set.name in seen:
            raise RuleError(
                f"two rule sets are named {rule_set.name!r} ({seen[rule_set.name]} and {spec}); "
                "their columns would collide: rename one"
            )
        seen[rule_set.name] = spec
        rule_sets.append(rule_set)
    return rule_sets


def score_columns(rule_set: RuleSet | str) -> tuple[str, str, str]:
    """Report columns a rule set adds: ``score_<name>``, ``grade_<name>``, ``reasons_<name>``."""
    name = rule_set if isinstance(rule_set, str) else rule_set.name
    return f"score_{name}", f"grade_{name}", f"reasons_{name}"


def score_frame(rule_sets: Sequence[RuleSet], frame: MetricFrame) -> dict[str, Any]:
    """Score every photo of ``frame`` under every rule set → new columns (name → list/array of N).

    Rows whose ``status`` is ``error`` get score NaN, grade "" and a reason quoting the error.
    """
    ok = frame.ok()
    errors = frame.errors() if not ok.all() else None
    out: dict[str, Any] = {}
    for rule_set in rule_sets:
        view = frame.with_thresholds(rule_set.effective_thresholds(frame.scan_thresholds))
        result = rule_set.score(view)
        scores = np.asarray(result.scores, dtype=np.float64).copy()
        grades = list(result.grades)
        reasons = list(result.reasons)
        if len(scores) != frame.size or len(grades) != frame.size or len(reasons) != frame.size:
            raise RuleError(f"rule set {rule_set.name!r} returned {len(scores)} scores for {frame.size} photos")
        if errors is not None:
            for i in np.flatnonzero(~ok):
                scores[i] = math.nan
                grades[i] = ""
                reasons[i] = f"not scored: the photo could not be analysed ({errors[i] or 'unknown error'})"
        score_col, grade_col, reasons_col = score_columns(rule_set)
        out[score_col] = scores
        out[grade_col] = grades
        out[reasons_col] = reasons
    return out


def score_dataframe(rule_sets: Sequence[RuleSet], df: Any, scan_thresholds: Thresholds) -> Any:
    """A copy of a report DataFrame with score/grade/reasons columns for every rule set (replaced if present)."""
    frame = MetricFrame.from_dataframe(df, scan_thresholds)
    columns = score_frame(rule_sets, frame)
    result = df.copy()
    for key, values in columns.items():
        result[key] = values
    return result


def score_row(rule_sets: Sequence[RuleSet], row: Mapping[str, Any], scan_thresholds: Thresholds) -> dict[str, Any]:
    """Score one photo's report row: ``{score_<n>: float, grade_<n>: str, reasons_<n>: str}`` per rule set."""
    frame = MetricFrame.from_rows([row], scan_thresholds)
    columns = score_frame(rule_sets, frame)
    out: dict[str, Any] = {}
    for key, values in columns.items():
        value = values[0]
        out[key] = float(value) if key.startswith("score_") else str(value)
    return out


_SCORE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)


def parse_fail_under(spec: str) -> tuple[str, float]:
    """``"portrait=60"`` → ``("portrait", 60.0)`` for ``--fail-under``; bad input raises RuleError."""
    name, sep, value = str(spec).partition("=")
    name = name.strip()
    # ASCII digits only: float() would also take "٦٠" or "６０"
    score = float(value) if _SCORE.fullmatch(value.strip()) else math.nan
    if not sep or not is_rule_set_name(name) or not math.isfinite(score) or not 0 <= score <= 100:
        raise RuleError(f"--fail-under expects NAME=SCORE with a score from 0 to 100, e.g. portrait=60; got {spec!r}")
    return name, score


def below_threshold(scores: Sequence[float] | np.ndarray, minimum: float) -> np.ndarray:
    """Mask of photos scoring below ``minimum`` (unscored NaN rows are not counted: errors have their own gate)."""
    values = np.asarray(scores, dtype=np.float64)
    return np.nan_to_num(values, nan=math.inf) < minimum


__all__ = [
    "ENTRY_POINT_GROUP",
    "METRICS",
    "MetricFrame",
    "PRESETS",
    "RULE_SETS",
    "RegistryError",
    "RuleError",
    "RuleSet",
    "ScoreResult",
    "TomlRuleSet",
    "below_threshold",
    "build_registry",
    "get_rule_set",
    "load_rule_file",
    "load_rule_set",
    "load_rule_sets",
    "parse_fail_under",
    "parse_rule_text",
    "score_columns",
    "score_dataframe",
    "score_frame",
    "score_row",
    "thresholds_from_metadata",
]
