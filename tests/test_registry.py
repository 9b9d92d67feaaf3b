import pytest

from exposure_cli.registry import Registry, RegistryError


def test_unknown_name_suggests_and_duplicate_raises():
    reg = Registry("thing")
    reg.register("baseline", 1)
    with pytest.raises(RegistryError, match="did you mean 'baseline'"):
        reg.get("basline")
    with pytest.raises(RegistryError, match="duplicate"):
        reg.register("baseline", 2)


def test_broken_plugin_fails_every_lookup(monkeypatch):
    from importlib import metadata

    class BrokenEP:
        name, value = "broken", "nowhere:thing"

        def load(self):
            raise ImportError("no module named nowhere")

    monkeypatch.setattr(metadata, "entry_points", lambda group: [BrokenEP()])
    reg = Registry("rule set", "exposure_cli.test_group")
    reg.register("default", 0)
    for _ in range(2):
        with pytest.raises(RegistryError, match="cannot load rule set plugin 'broken'"):
            reg.get("default")
