"""Mutation testing with mutmut: does the suite notice when the code is changed a little?

For each target (a group of modules and the test files that exercise them) this copies the package and
its tests into a scratch folder, lets mutmut rewrite every function there into many small variants
(``+`` → ``-``, ``<`` → ``<=``, a constant changed, an argument dropped, …) and runs, for each variant,
only the tests that cover the function it lives in. A variant that no test notices *survived*.

    python tools/mutation.py                      # every target (tens of minutes on 2 cores)
    python tools/mutation.py color stats          # some targets
    python tools/mutation.py --quick              # the fast subset CI runs (tests/test_mutation.py)
    python tools/mutation.py rules --show         # also print the diff of every surviving variant

Score = killed ÷ (variants − the ones listed as equivalent in tools/mutation_equivalent.toml). A variant
that no selected test runs ("no tests") or that times out counts as not killed. ``--min-score`` makes the
exit status 1 when a target scores lower; a listed equivalent that no longer exists is reported, so the
list cannot rot. docs/TESTING.md has the scores and every survivor with its reason.

mutmut must be importable (it is in the ``test`` extra); the scratch copy is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.toml"


@dataclass(frozen=True)
class Target:
    """Files mutated, the tests run against them, and which functions count (globs on mutant names)."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ("*",)
    note: str = ""
    #: Tests left out (pytest node ids), each with its reason in the target's note.
    deselect: tuple[str, ...] = ()
    #: Set by --only: a part of the target (globs on mutant names, combined with `functions`).
    only: tuple[str, ...] = ()

    def counts(self, mutant: str) -> bool:
        return (any(fnmatch.fnmatchcase(mutant, p) for p in self.functions)
                and (not self.only or any(fnmatch.fnmatchcase(mutant, p) for p in self.only)))


TARGETS: dict[str, Target] = {
    "color": Target(("exposure_cli/color.py",), ("tests/test_color.py",)),
    "stats": Target(("exposure_cli/stats.py",), ("tests/test_stats.py", "tests/test_color.py")),
    "rules": Target(
        ("exposure_cli/rules/*.py",),
        ("tests/test_rules_expr.py", "tests/test_rules_sets.py", "tests/test_rules_metrics.py",
         "tests/test_rescore.py", "tests/test_rules_plugins.py"),
        note="the throughput test is left out: it asserts wall-clock seconds, which mutmut's tracing and a "
             "loaded machine break without any mutant (the first full run stopped on it)",
        deselect=("tests/test_rescore.py::test_rescore_throughput_is_vectorised",),
    ),
    # Narrower parts of `rules` and `writers`: the same mutants (by name), fewer test files per mutant, so a
    # part can be run in the time a 2-core machine shared with training allows. A survivor of a part can be
    # re-checked against the whole test selection with `rules --only NAME` / `writers --only NAME`.
    "rules-parser": Target(
        ("exposure_cli/rules/expr.py",),
        ("tests/test_rules_parser.py", "tests/test_rules_expr.py"),
        functions=tuple(f"exposure_cli.rules.expr.{f}__*" for f in (
            "xǁRuleErrorǁ*", "x__rebuild_rule_error", "x_tokenize", "xǁ_Parserǁ*", "x_parse", "x_check", "x__pos",
            "x__type_of", "x__require", "x__unknown_name_message", "x_measure", "x_referenced_names",
            "x_to_source", "x__source", "x_format_number", "x_negate_op", "x_symbol")),
        note="the expression tokenizer, parser and type checker, the error type and the canonical text (the "
             "evaluator `_value`/`evaluate` is quick-rules); the three hypothesis tests are left out (about 10 s "
             "per surviving mutant): a mutant only they would kill counts as not killed, so the score is a "
             "lower bound",
        deselect=("tests/test_rules_expr.py::test_random_text_only_ever_raises_rule_error",
                  "tests/test_rules_expr.py::test_random_token_soup_only_ever_raises_rule_error",
                  "tests/test_rules_expr.py::test_arbitrary_unicode_only_ever_raises_rule_error"),
    ),
    "rules-validation": Target(
        ("exposure_cli/rules/ruleset.py",),
        ("tests/test_rules_validation.py",),
        functions=tuple(f"exposure_cli.rules.ruleset.{f}__*" for f in (
            "x__build", "x__grades", "x__thresholds", "xǁ_Linesǁ*", "x__policy", "x__check", "x__parse",
            "x__is_number", "x_parse_rule_text", "x_load_rule_file", "xǁTomlRuleSetǁ__init_")),
        note="reading and validating a rule file (`_build`, thresholds, grades, policies, line numbers of errors) "
             "against its own test file only (test_rules_sets.py would cost ~10 s per surviving mutant): a "
             "survivor is re-checked with `--tests tests/test_rules_validation.py --tests tests/test_rules_sets.py` "
             "(whose hypothesis and definition-bomb tests stay left out), so the first score is a lower bound",
        deselect=("tests/test_rules_sets.py::test_random_rule_files_load_or_raise_rule_error_only",
                  "tests/test_rules_sets.py::test_more_bad_area_never_raises_a_global_preset_score",
                  "tests/test_rules_sets.py::test_definition_bombs_and_deep_chains_are_rejected_quickly"),
    ),
    "rules-explain": Target(
        ("exposure_cli/rules/ruleset.py", "exposure_cli/rules/__init__.py"),
        ("tests/test_rules_describe.py", "tests/test_rules_sets.py", "tests/test_rules_plugins.py",
         "tests/test_rules_cli.py"),
        functions=tuple(f"exposure_cli.rules.{f}__*" for f in (
            "ruleset.xǁTomlRuleSetǁexplain", "ruleset.xǁTomlRuleSetǁdescribe", "ruleset.xǁRuleSetǁexplain",
            "ruleset.xǁRuleSetǁdescribe", "ruleset.x__unit_of", "x__preset_factory", "x_build_registry",
            "x__instantiate", "x_get_rule_set", "x__looks_like_path", "x_load_rule_set", "x_load_rule_sets",
            "x_score_columns")),
        note="`explain`, `describe`, the base class's defaults and the rule-set registry (presets, plugins, "
             "files); the same hypothesis and bomb tests as rules-validation are left out, and the docs check "
             "of test_rules_cli.py (it reads docs/RULES.md, which the scratch copy does not have)",
        deselect=("tests/test_rules_cli.py::test_docs_describe_every_preset_metric_and_policy",
                  "tests/test_rules_sets.py::test_random_rule_files_load_or_raise_rule_error_only",
                  "tests/test_rules_sets.py::test_more_bad_area_never_raises_a_global_preset_score",
                  "tests/test_rules_sets.py::test_definition_bombs_and_deep_chains_are_rejected_quickly"),
    ),
    "writers": Target(
        ("exposure_cli/report/writers.py", "exposure_cli/outdir.py"),
        ("tests/test_writers.py", "tests/test_report.py", "tests/test_outdir.py"),
        functions=("exposure_cli.report.writers.*", "exposure_cli.outdir.xǁJournalǁ*"),
        note="the report writers and the journal (outdir.Journal)",
    ),
    "writers-files": Target(
        ("exposure_cli/report/writers.py",),
        ("tests/test_writers.py",),
        functions=("exposure_cli.report.writers.*",),
        note="report/writers.py alone (JSON, CSV, Parquet, XLSX, reading back) against tests/test_writers.py; "
             "writers-tabular and writers-xlsx are its two halves",
    ),
    "writers-tabular": Target(
        ("exposure_cli/report/writers.py",),
        ("tests/test_writers.py",),
        functions=tuple(f"exposure_cli.report.writers.{f}__*" for f in (
            "x__jsonable", "x_row_to_json", "x_clean_text", "x_sidecar_name", "x_sidecar_path", "x__chunks",
            "x__arrow_table", "x__kind_of", "x__normalise", "x_write_rows", "xǁRowStreamWriterǁ*",
            "x__is_regular_file", "x_escape_formula", "x_unescape_formula", "x__csv_cell", "x__from_csv_text",
            "x_read_report", "x_write_report", "x__isnan")),
        note="the JSON, JSONL, CSV and Parquet writers, the sidecars and reading reports back (writers.py "
             "without the XLSX functions)",
    ),
    "writers-xlsx": Target(
        ("exposure_cli/report/writers.py",),
        ("tests/test_writers.py",),
        functions=tuple(f"exposure_cli.report.writers.{f}__*" for f in (
            "x_require_xlsx", "x_score_colour", "x__write_xlsx", "x__parse_time", "x__read_xlsx", "x__xlsx_header")),
        note="the XLSX writer and reader",
    ),
    "journal": Target(
        ("exposure_cli/outdir.py",),
        ("tests/test_writers.py", "tests/test_outdir.py"),
        functions=("exposure_cli.outdir.xǁJournalǁ*",),
        note="outdir.Journal (the scan's append-only row journal)",
    ),
    "orientation": Target(
        ("exposure_cli/decoding.py", "exposure_cli/exif.py"),
        ("tests/test_decoding.py", "tests/test_orientation.py"),
        functions=("exposure_cli.decoding.x_apply_orientation__*", "exposure_cli.exif.x__parse_tiff__*",
                   "exposure_cli.exif.x__read_ifd__*", "exposure_cli.exif.x__decode_value__*"),
        note="apply_orientation and the EXIF IFD reader that finds the orientation tag; the two RAW tests are "
             "left out: LibRaw's OpenMP pool deadlocks in mutmut's forked children (a hang, not a result), "
             "and RAW photos are turned by LibRaw, not by apply_orientation",
        deselect=("tests/test_decoding.py::test_raw_keeps_the_exposure_it_was_shot_at",
                  "tests/test_decoding.py::test_raw_is_turned_upright_once_and_keeps_its_exif"),
    ),
    "resume": Target(
        ("exposure_cli/outdir.py",),
        ("tests/test_outdir.py",),
        functions=("exposure_cli.outdir.x_plan_inputs__*", "exposure_cli.outdir.x_row_fingerprint__*",
                   "exposure_cli.outdir.xǁOutputFolderǁprepare__*", "exposure_cli.outdir.xǁJournalǁentries__*",
                   "exposure_cli.outdir.xǁJournalǁlast_offsets__*"),
        note="deciding what a --resume skips (outdir.plan_inputs, OutputFolder.prepare, the journal's entries)",
    ),
}

#: The subset CI runs on every test run: the residual sign, the threshold counts, the rule evaluator.
QUICK: dict[str, Target] = {
    "quick-color": Target(("exposure_cli/color.py",), ("tests/test_color.py",),
                          functions=("exposure_cli.color.x_residual*", "exposure_cli.color.x_ideal_grey*")),
    "quick-stats": Target(("exposure_cli/stats.py",), ("tests/test_stats.py",),
                          functions=("exposure_cli.stats.x_shares_from_hist_matrix__*",)),
    "quick-rules": Target(("exposure_cli/rules/expr.py",), ("tests/test_rules_expr.py",),
                          functions=("exposure_cli.rules.expr.x__value__*", "exposure_cli.rules.expr.x_evaluate__*")),
}

#: mutmut exit code → outcome (mutmut.stats.status_by_exit_code, folded into what the score needs).
KILLED_CODES = {1, 3, 37}
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}
TIMEOUT_CODES = {36, 24, -24, 152, 255}
SKIPPED_CODES = {34}


@dataclass
class Result:
    name: str
    target: Target
    outcome: dict[str, str] = field(default_factory=dict)  # mutant → killed/survived/no tests/timeout/…
    equivalent: dict[str, str] = field(default_factory=dict)  # mutant → why it cannot be killed
    stale_equivalents: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workdir: Path | None = None

    def count(self, kind: str) -> int:
        return sum(1 for m, o in self.outcome.items() if o == kind and m not in self.equivalent)

    @property
    def considered(self) -> int:
        return sum(1 for m, o in self.outcome.items() if m not in self.equivalent and o != "skipped")

    @property
    def score(self) -> float:
        return 100.0 * self.count("killed") / self.considered if self.considered else 100.0

    def survivors(self) -> list[str]:
        return sorted(m for m, o in self.outcome.items() if o != "killed" and o != "skipped" and m not in self.equivalent)

    def as_dict(self) -> dict:
        return {
            "target": self.name, "only": list(self.target.only), "mutants": len(self.outcome), "equivalent": len(self.equivalent),
            "killed": self.count("killed"), "survived": self.count("survived"), "no_tests": self.count("no tests"),
            "timeout": self.count("timeout"), "score_pct": round(self.score, 1), "seconds": round(self.seconds, 1),
            "survivors": {m: self.outcome[m] for m in self.survivors()},
            "equivalents": self.equivalent, "stale_equivalents": self.stale_equivalents,
        }


def _outcome(code: int | None) -> str:
    if code in KILLED_CODES:
        return "killed"
    if code in SURVIVED_CODES:
        return "survived"
    if code in NO_TESTS_CODES:
        return "no tests"
    if code in TIMEOUT_CODES:
        return "timeout"
    if code in SKIPPED_CODES:
        return "skipped"
    return "not checked" if code is None else "suspicious"


def load_equivalents(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """mutant name → reason it is equivalent (behaves like the original for every input the code gets)."""
    if not path.is_file():
        return {}
    import tomllib

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {name: str(entry["why"]) for name, entry in data.get("equivalent", {}).items()}


def _toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(workdir: Path, target: Target) -> list[str]:
    """Copy the package and tests into `workdir`, configure mutmut there; returns the test files used."""
    for name in ("exposure_cli", "tests"):
        shutil.copytree(ROOT / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    tests = [t for t in target.tests if (workdir / t).is_file()]
    if not tests:
        raise SystemExit(f"none of the test files {target.tests} exists")
    pytest_args = ["-p", "no:cacheprovider", "-q", "-x", "--timeout", "300"]
    for node in target.deselect:
        pytest_args += ["--deselect", node]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["exposure_cli/"]\n'
        f"only_mutate = {_toml_list(target.files)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        f"pytest_add_cli_args = {_toml_list(pytest_args)}\n"
        "use_git_change_detection = false\n"
    )
    (workdir / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return tests


def read_outcomes(workdir: Path) -> dict[str, str]:
    outcome: dict[str, str] = {}
    for meta in (workdir / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            outcome[name] = _outcome(code)
    return outcome


def show(workdir: Path, mutant: str) -> str:
    env = _env()
    proc = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=workdir, env=env,
                          capture_output=True, text=True)
    return proc.stdout.strip()


_SHOW_MANY = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
for name in json.load(sys.stdin):
    print(json.dumps([name, get_diff_for_mutant(name, path=find_mutant(name).path)]), flush=True)
"""


def show_many(workdir: Path, mutants: list[str]) -> dict[str, str]:
    """The diff of each mutant from one process (``mutmut show`` once per mutant takes seconds each)."""
    if not mutants:
        return {}
    proc = subprocess.run([sys.executable, "-c", _SHOW_MANY], cwd=workdir, env=_env(), input=json.dumps(mutants),
                          capture_output=True, text=True)
    diffs = {}
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            name, diff = json.loads(line)
            diffs[name] = f"# {name}\n{diff.strip()}"
    return {m: diffs.get(m) or show(workdir, m) for m in mutants}


def _env() -> dict[str, str]:
    """The environment for mutmut: one thread per process, and never the checkout itself on the path (the
    tests must import the mutated copy)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def run_target(name: str, target: Target, max_children: int, keep: bool, log) -> Result:
    equivalents = load_equivalents()
    workdir = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    started = time.monotonic()
    result = Result(name, target, workdir=workdir)
    try:
        tests = prepare(workdir, target)
        log(f"[{name}] mutating {', '.join(target.files)}; tests: {', '.join(tests)}")
        patterns = list(target.only) or [p for p in target.functions if p != "*"]
        cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *patterns]
        proc = subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise SystemExit(f"[{name}] mutmut failed (exit {proc.returncode}):\n{tail}")
        outcome = read_outcomes(workdir)
        result.outcome = {m: o for m, o in outcome.items()
                          if target.counts(m) and o != "not checked"}
        module_prefixes = {f.replace("/", ".").removesuffix(".py").removesuffix("__init__").replace("*", "")
                           for f in target.files}  # a package's own functions are named pkg.x_f, not pkg.__init__.x_f
        mine = {m: why for m, why in equivalents.items()
                if any(m.startswith(p) for p in module_prefixes)
                and target.counts(m)}
        result.equivalent = {m: why for m, why in mine.items() if m in result.outcome}
        result.stale_equivalents = sorted(m for m in mine if m not in result.outcome)
    finally:
        result.seconds = time.monotonic() - started
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
            result.workdir = None
    return result


def markdown(results: list[Result]) -> str:
    lines = ["| target | mutants | equivalent | killed | survived | no tests | timeout | score | time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        d = r.as_dict()
        only = r.target.only
        name = r.name + ((f" (only {', '.join(only)})" if len(only) <= 3 else f" (only {len(only)} names)") if only else "")
        lines.append(f"| {name} | {d['mutants']} | {d['equivalent']} | {d['killed']} | {d['survived']} | "
                     f"{d['no_tests']} | {d['timeout']} | {d['score_pct']:.1f} % | {d['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"targets (default: all): {', '.join(TARGETS)}")
    parser.add_argument("--quick", action="store_true", help="the small fast subset CI runs")
    parser.add_argument("--max-children", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--min-score", type=float, default=None, help="exit 1 if a target scores lower (%%)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--show", action="store_true", help="print the diff of every survivor")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--tests", action="append", default=[], metavar="FILE",
                        help="run these test files instead of the target's (repeatable), e.g. to re-check the "
                             "survivors of a narrow target against more tests")
    parser.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="only the target's mutants whose name matches (repeatable); a part of a target, "
                             "e.g. 'exposure_cli.rules.expr.*'")
    args = parser.parse_args(argv)

    chosen = QUICK if args.quick else TARGETS
    names = args.targets or list(chosen)
    unknown = [n for n in names if n not in chosen]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(chosen)}")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = []
    for name in names:
        target = chosen[name]
        if args.only:
            target = dataclasses.replace(target, only=tuple(args.only))
        if args.tests:
            target = dataclasses.replace(target, tests=tuple(args.tests))
        result = run_target(name, target, args.max_children, keep=args.keep or args.show, log=log)
        results.append(result)
        d = result.as_dict()
        log(f"[{name}] {d['killed']}/{result.considered} killed ({d['score_pct']:.1f} %), "
            f"{len(result.equivalent)} equivalent, {result.seconds:.0f} s")
        diffs = show_many(result.workdir, result.survivors()) if args.show and result.workdir is not None else {}
        for mutant in result.survivors():
            print(f"  {result.outcome[mutant]:<9} {mutant}")
            if mutant in diffs:
                print("    " + diffs[mutant].replace("\n", "\n    "))
        for mutant in result.stale_equivalents:
            print(f"  stale equivalent (no such mutant any more): {mutant}")
        if args.show and result.workdir is not None and not args.keep:
            shutil.rmtree(result.workdir, ignore_errors=True)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n", encoding="utf-8")
    if args.min_score is not None and any(r.score < args.min_score for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
