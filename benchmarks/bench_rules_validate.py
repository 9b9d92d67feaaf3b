"""How rule-file validation time grows with the number of rows (it must grow linearly).

Usage:
    python benchmarks/bench_rules_validate.py            # 125 … 1000 rows, [[rows]] tables and inline rows
    python benchmarks/bench_rules_validate.py --rows 1000 2000 4000 --no-limit   # past the 1000-row cap

Validation (``parse_rule_text``: TOML, line lookup for messages, expression parsing and type checks) of
generated rule sets; prints the milliseconds per file and per row. Before the line index in
``rules/ruleset.py`` (issue 14) each row's line lookup scanned every header, so the time per row grew with
the rows (a 741 k-row file was still validating after 240 s); files are now capped at 1 MB and 1000 rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exposure_cli.rules import ruleset  # noqa: E402
from exposure_cli.rules.ruleset import MAX_RULE_ENTRIES, parse_rule_text  # noqa: E402


def rule_text(rows: int, inline: bool) -> str:
    if inline:
        body = ",\n".join(f'  {{ when = "global.bad_pct < {i % 50}", score = {i % 100}, label = "r{i}" }}'
                          for i in range(rows))
        return f'name = "bench"\nrows = [\n{body}\n]\n'
    return 'name = "bench"\n' + "".join(
        f'[[rows]]\nwhen = "global.bad_pct < {i % 50}"\nscore = {i % 100}\nlabel = "r{i}"\n' for i in range(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, nargs="+", default=[125, 250, 500, MAX_RULE_ENTRIES])
    parser.add_argument("--no-limit", action="store_true", help="lift the row cap, to see the growth past it")
    args = parser.parse_args()
    if args.no_limit:
        ruleset.MAX_RULE_ENTRIES = 10**9
    print(f"{'style':8} {'rows':>6} {'bytes':>8} {'ms/file':>9} {'µs/row':>8}")
    for inline in (False, True):
        for rows in args.rows:
            text = rule_text(rows, inline)
            best = float("inf")
            for _ in range(args.reps):
                started = time.perf_counter()
                parse_rule_text(text)
                best = min(best, time.perf_counter() - started)
            print(f"{'inline' if inline else 'tables':8} {rows:6d} {len(text):8d} {best * 1e3:9.1f} "
                  f"{best / rows * 1e6:8.0f}")


if __name__ == "__main__":
    main()
