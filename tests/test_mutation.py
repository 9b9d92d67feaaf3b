"""The fast mutation-testing subset (tools/mutation.py --quick quick-color): every variant of the residual
sign functions must be killed by tests/test_color.py, so a weakened sign test cannot slip in unnoticed.
The full runs and their scores are in docs/TESTING.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mutmut")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_every_mutant_of_the_residual_sign_is_killed(tmp_path):
    out = tmp_path / "mutation.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "mutation.py"), "--quick", "quick-color",
                           "--max-children", "1", "--min-score", "100", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert out.is_file(), proc.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    assert result["mutants"] >= 15, result  # the variants were really made and run
    assert result["survivors"] == {}, result
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
