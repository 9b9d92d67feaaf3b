"""Coverage-guided fuzzing with atheris (libFuzzer for Python), when it is installed.

Each target runs in a subprocess for a fixed time: 3 s per target by default, ``EXPOSURE_FUZZ_SECONDS``
(default 300) in the long mode (``pytest --long`` / ``EXPOSURE_LONG=1``). Anything but the documented
validation error (RuleError for rule text, DecodeError for image bytes) is a crash and fails the test.
The number of cases and cases/s are printed (``-s``) and recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import long_mode, subprocess_env

pytest.importorskip("atheris")

HARNESSES = {
    "rule_expression": """
        with atheris.instrument_imports(include=["exposure_cli"]):
            from exposure_cli.rules import expr
            from exposure_cli.rules.metrics import metric_types
            from exposure_cli.stats import REGIONS
        NAMES = expr.Names(metrics=metric_types(), defines={}, regions=REGIONS)

        def one_input(data):
            text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(400)
            try:
                expr.check(expr.parse(text), NAMES)
            except expr.RuleError:
                pass
    """,
    "rule_file": """
        with atheris.instrument_imports(include=["exposure_cli"]):
            from exposure_cli.rules.expr import RuleError
            from exposure_cli.rules.ruleset import parse_rule_text
        SEED = 'name = "f"\\nstart = 100\\n[[deductions]]\\nwhen = "global.bad_pct >= 2"\\npoints = "min(50, global.bad_pct)"\\n'

        def one_input(data):
            fdp = atheris.FuzzedDataProvider(data)
            text = fdp.ConsumeUnicodeNoSurrogates(600)
            if fdp.ConsumeBool():
                cut = len(text) % (len(SEED) + 1)
                text = SEED[:cut] + text + SEED[cut:]
            try:
                parse_rule_text(text, file="fuzz.toml")
            except RuleError:
                pass
    """,
    "image_bytes": """
        with atheris.instrument_imports(include=["exposure_cli"]):
            from exposure_cli.decoding import DecodeError, decode_bytes
            from exposure_cli.exif import read_exif

        def one_input(data):
            read_exif(data)
            try:
                decode_bytes(data, max_pixels=1_000_000)
            except DecodeError:
                pass
    """,
}


#: Memory the fuzzed code may add to the process before libFuzzer calls it an out-of-memory crash.
RSS_BUDGET_MB = 2048


def inherited_peak_rss_mb() -> int:
    """Peak RSS a child of this process starts with, as libFuzzer measures it.

    libFuzzer reads its peak RSS with ``getrusage(RUSAGE_SELF).ru_maxrss``, and Linux carries the parent's
    high-water mark into a child across fork/vfork + exec. After a long test session this pytest process
    holds gigabytes (torch, Ray), so a fixed ``-rss_limit_mb=2048`` tripped on the first input in CI
    ("out-of-memory (used: 3743Mb)") although the harness itself used a few hundred MB.
    """
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux


def run_target(name: str, seconds: int, tmp_path) -> tuple[int, float]:
    script = tmp_path / f"fuzz_{name}.py"
    script.write_text("import sys\nimport atheris\n" + textwrap.dedent(HARNESSES[name])
                      + "\natheris.Setup(sys.argv, one_input)\natheris.Fuzz()\n")
    corpus = tmp_path / f"corpus_{name}"
    corpus.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(corpus), f"-max_total_time={seconds}", f"-rss_limit_mb={inherited_peak_rss_mb() + RSS_BUDGET_MB}",
         "-timeout=10", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, env=subprocess_env(), timeout=seconds + 120, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"atheris found a crash in {name}:\n{log[-4000:]}"
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert done, log[-2000:]
    runs, secs = int(done.group(1)), max(int(done.group(2)), 1)
    print(f"atheris {name}: {runs} cases in {secs} s = {runs / secs:.0f} cases/s")
    return runs, runs / secs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", sorted(HARNESSES))
def test_atheris_short(target, tmp_path):
    if long_mode():
        pytest.skip("the long mode runs test_atheris_long instead")
    runs, _ = run_target(target, 3, tmp_path)
    assert runs > 100


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("target", sorted(HARNESSES))
def test_atheris_long(target, tmp_path):
    runs, _ = run_target(target, int(os.environ.get("EXPOSURE_FUZZ_SECONDS", "300")), tmp_path)
    assert runs > 1000
