"""Model architectures, looked up by name (pure ``nn.Module``s; no I/O).

``create_model("eat_iea")`` builds the full network; ``eat_iea_test`` is a tiny variant for fast tests;
``eat_iea_no_dwt``, ``eat_iea_no_structure`` and ``eat_iea_no_schedule`` are the ablations of
docs/MODEL.md. A weights card stores the architecture name and its config, so
``create_model(name, config=card_config)`` rebuilds exactly the trained network.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..registry import Registry

#: name → factory(config_overrides) -> nn.Module
MODELS: Registry[Callable[..., Any]] = Registry("model")

#: Config overrides of each registered EAT-IEA variant (on top of EATIEAConfig defaults).
VARIANTS: dict[str, dict[str, Any]] = {
    "eat_iea": {},
    "eat_iea_test": {
        "widths": (4, 8, 8, 16),
        "structure_width": 4,
        "structure_long_width": 8,
        "decoder_widths": (8, 8, 4, 4),
        "eat_blocks": 1,
        "heads": 2,
        "ref_grid": 3,
        "interest_points": 2,
    },
    "eat_iea_no_dwt": {"use_dwt": False},
    "eat_iea_no_structure": {"use_structure": False},
    "eat_iea_no_schedule": {"use_schedule": False},
}


def _make_factory(overrides: dict[str, Any]) -> Callable[..., Any]:
    def factory(config: dict[str, Any] | None = None, **kwargs: Any):
        from .eat_iea import EATIEA, EATIEAConfig

        values = {**overrides, **(config or {}), **kwargs}
        cfg = EATIEAConfig.from_dict(values)
        unknown = set(values) - {f.name for f in dataclasses.fields(EATIEAConfig)}
        if unknown:
            raise TypeError(f"unknown EAT-IEA config keys: {sorted(unknown)}")
        return EATIEA(cfg)

    return factory


for _name, _overrides in VARIANTS.items():
    MODELS.register(_name, _make_factory(_overrides))


def create_model(name: str, config: dict[str, Any] | None = None, **kwargs: Any):
    """Build the architecture registered as `name`.

    Args:
        name: Registered architecture name (see :data:`MODELS`).
        config: Full or partial config dict (e.g. from a weights card); overrides the variant's defaults.
        **kwargs: Further config overrides.
    """
    return MODELS.get(name)(config, **kwargs)


def model_config(name: str) -> dict[str, Any]:
    """The full config dict of a registered variant (what a weights card stores)."""
    from .eat_iea import EATIEAConfig

    MODELS.get(name)  # unknown names fail loudly with suggestions
    return EATIEAConfig.from_dict(VARIANTS[name]).to_dict()


__all__ = ["MODELS", "VARIANTS", "create_model", "model_config"]
