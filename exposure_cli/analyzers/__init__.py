"""Analyzer registry. Built-ins are imported lazily so that importing the package never imports torch.

Third-party analyzers register through the ``exposure_cli.analyzers`` entry-point group; the entry point
must name a factory ``(**options) -> Analyzer``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry
from .base import Analyzer, AnalyzerInfo

#: name → factory(**options) -> Analyzer. Options: device, weights, working_long_side, batch_size.
ANALYZERS: Registry[Callable[..., Analyzer]] = Registry("analyzer", "exposure_cli.analyzers")

#: The learned model; its weights ship in the wheel (weights/ → exposure_cli/_weights, see docs/MODEL.md).
DEFAULT_ANALYZER = "eat"


def _baseline(**options: Any) -> Analyzer:
    from .baseline import BaselineAnalyzer

    return BaselineAnalyzer(**options)


ANALYZERS.register("baseline", _baseline)


def _eat(**options: Any) -> Analyzer:
    from .eat import EATAnalyzer

    return EATAnalyzer(**options)


ANALYZERS.register("eat", _eat)


def create_analyzer(name: str | None = None, **options: Any) -> Analyzer:
    """Build the analyzer registered as `name` (default: :data:`DEFAULT_ANALYZER`)."""
    return ANALYZERS.get(name or DEFAULT_ANALYZER)(**options)


__all__ = ["ANALYZERS", "Analyzer", "AnalyzerInfo", "DEFAULT_ANALYZER", "create_analyzer"]
