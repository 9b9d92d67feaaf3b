"""The fast mutation-testing subsets (tools/mutation.py --quick NAME): every non-equivalent variant of the
residual sign functions (quick-color), of the statistics' histogram shares (quick-stats) and of the rule
evaluator scoring uses (quick-rules) must be killed by the tests, so a weakened test cannot slip in
unnoticed. The full runs and their scores are in docs/TESTING.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mutmut")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("subset, at_least", [("quick-color", 15), ("quick-stats", 100), ("quick-rules", 100)])
def test_every_mutant_of_the_quick_subsets_is_killed(tmp_path, subset, at_least):
    out = tmp_path / "mutation.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "mutation.py"), "--quick", subset,
                           "--max-children", "1", "--min-score", "100", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert out.is_file(), proc.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    assert result["mutants"] >= at_least, result  # the variants were really made and run
    assert result["survivors"] == {}, result
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
