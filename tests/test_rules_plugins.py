"""Rule-set plugins through the real entry-point machinery (importlib.metadata over a dist-info on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exposure_cli import rules, stats
from exposure_cli.cli import app
from exposure_cli.registry import RegistryError

PLUGINS = Path(__file__).parent / "plugins"


def install_fake_distribution(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """Write what `pip install` would leave behind for a package declaring these entry points."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    info.joinpath("entry_points.txt").write_text(f"[{rules.ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that has not looked at entry points yet, with the demo package importable."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    registry = rules.build_registry()
    monkeypatch.setattr(rules, "RULE_SETS", registry)
    yield registry
    sys.modules.pop("exposure_rules_demo", None)


def test_plugin_is_found_through_its_entry_point_at_first_lookup(tmp_path, monkeypatch, fresh_registry):
    install_fake_distribution(tmp_path, "exposure_rules_demo", {"balance": "exposure_rules_demo:BalanceRuleSet"})
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("exposure_rules_demo", None)
    assert "exposure_rules_demo" not in sys.modules  # nothing loaded before the first lookup
    rule_set = rules.load_rule_sets(["balance"])[0]
    assert "exposure_rules_demo" in sys.modules
    assert rule_set.name == "balance"
    assert "plugin exposure_rules_demo:BalanceRuleSet" in rule_set.origin
    assert "balance" in fresh_registry.names() and "portrait" in fresh_registry.names()

    residual = np.zeros((50, 50), np.float32)
    residual[:10] = -0.5  # 20 % over, 0 % under
    row = stats.image_stats(residual, {}, stats.Thresholds())
    row.update(path="a.jpg", status="ok")
    result = rules.score_row([rule_set], row, stats.Thresholds())
    assert result["score_balance"] == pytest.approx(80.0)
    assert result["reasons_balance"] == "over 20.0 % vs under 0.0 %: imbalance 20.0 points → 80"
    errored = rules.score_row([rule_set], {"path": "b.jpg", "status": "error", "error": "boom"}, stats.Thresholds())
    assert np.isnan(errored["score_balance"]) and "boom" in errored["reasons_balance"]


def test_rules_list_shows_the_plugin(tmp_path, monkeypatch, fresh_registry):
    install_fake_distribution(tmp_path, "exposure_rules_demo", {"balance": "exposure_rules_demo:BalanceRuleSet"})
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(app, ["rules", "list"], catch_exceptions=False)
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("balance"))
    assert "plugin exposure_rules_demo:BalanceRuleSet" in line
    assert "imbalance" in line


def test_duplicate_plugin_name_is_an_error(tmp_path, monkeypatch, fresh_registry):
    install_fake_distribution(tmp_path, "exposure_rules_demo", {"portrait": "exposure_rules_demo:BalanceRuleSet"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="duplicate rule set 'portrait'"):
        rules.get_rule_set("portrait")
    monkeypatch.setattr(rules, "RULE_SETS", rules.build_registry())  # registries load entry points once
    result = CliRunner().invoke(app, ["rules", "list"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "duplicate rule set 'portrait'" in result.output


def test_entry_point_that_is_not_a_rule_set_fails_loudly(tmp_path, monkeypatch, fresh_registry):
    install_fake_distribution(tmp_path, "exposure_rules_demo", {"weird": "exposure_rules_demo:broken_factory"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(rules.RuleError, match="'weird' .* is not a RuleSet"):
        rules.get_rule_set("weird")
