"""A rule-set plugin that kills the process scoring a photo whose name contains ``poison`` (tests only).

It stands for what a worker can meet in the field — a decoder crashing on one file, the kernel's OOM
killer, a node lost — but on one chosen photo every time, so that tests/test_engine_ray_cluster.py can
check what the Ray engine does with a batch whose worker keeps dying (it retries, then gives up with a
clear error instead of hanging). Rule sets are pickled to the workers, so the worker imports this module:
the test cluster has ``tests/plugins`` on its import path.
"""

from __future__ import annotations

import os

import numpy as np

from exposure_cli.rules import MetricFrame, RuleSet, ScoreResult


class CrashRuleSet(RuleSet):
    """Scores 100 — except that a photo named ``*poison*`` ends the process on the spot (``os._exit``)."""

    name = "crash"
    description = "Test plugin: the worker dies on photos named *poison*"

    def score(self, frame: MetricFrame) -> ScoreResult:
        if any("poison" in str(p) for p in frame.raw("path")):
            log = os.environ.get("EXPOSURE_CRASH_LOG")
            if log:  # one line per death, for the test to count
                with open(log, "a") as fh:
                    fh.write(f"{os.getpid()}\n")
            os._exit(137)  # like a SIGKILL: no cleanup, no exception for anyone to catch
        scores = np.full(frame.size, 100.0)
        return ScoreResult(scores, [self.grade(s) for s in scores], ["ok"] * frame.size)
