"""A tiny rule-set plugin: the score falls with the imbalance between over- and under-exposed area.

It needs real code (a formula with a custom reason per photo), which is what plugins are for; everything
that a table or deductions can say belongs in a TOML file instead.
"""

from __future__ import annotations

import numpy as np

from exposure_cli.rules import MetricFrame, RuleSet, ScoreResult


class BalanceRuleSet(RuleSet):
    """100 − |over − under| (in percentage points), graded A-F like the presets."""

    name = "balance"
    description = "Demo plugin: penalises the imbalance between over- and under-exposed area"

    def score(self, frame: MetricFrame) -> ScoreResult:
        over = frame.metric("global.over_pct")
        under = frame.metric("global.under_pct")
        imbalance = np.abs(over - under)
        scores = np.clip(100.0 - np.nan_to_num(imbalance, nan=100.0), 0.0, 100.0)
        reasons = [
            f"over {o:.1f} % vs under {u:.1f} %: imbalance {d:.1f} points → {s:.0f}"
            for o, u, d, s in zip(over.tolist(), under.tolist(), imbalance.tolist(), scores.tolist())
        ]
        return ScoreResult(scores, [self.grade(s) for s in scores], reasons)


def broken_factory():
    """An entry point that does not produce a RuleSet (for the error-message test)."""
    return {"not": "a rule set"}
