"""Scan engines: where :class:`exposure_cli.processing.BatchProcessor` (the unit of work) runs.

* ``local`` — threads in this process (:mod:`exposure_cli.engines.local`); the default and the fastest
  choice on one machine.
* ``ray`` — Ray Data on a local or existing Ray cluster (:mod:`exposure_cli.engines.ray_engine`), for
  many machines and GPUs. Needs the ``ray`` extra.

Both engines feed the same journal and the same report writer, so their reports are identical. This
package never imports Ray at import time: ``exposure --help`` and the local engine stay fast and work
without the extra.
"""

from __future__ import annotations

import os
from enum import Enum
from types import ModuleType
from typing import Any, Callable, Iterator


class Engine(str, Enum):
    """Scan engines (``exposure scan --engine``)."""

    local = "local"
    ray = "ray"


#: What to install for the Ray engine; quoted in every "missing extra" message.
RAY_INSTALL_HINT = "pip install 'exposure-cli[ray]'"


class EngineUnavailable(RuntimeError):
    """The chosen engine cannot run here (its extra is not installed); the message says what to install."""


class ClusterUnreachable(EngineUnavailable):
    """Nothing accepts connections at ``--ray-address``; the message names the address and why."""


def prepare_ray_environment(loopback: bool) -> None:
    """Environment for a Ray driver; must run before ``import ray`` (Ray reads it at import time).

    Args:
        loopback: Starting a private local instance, or joining a cluster on this machine's loopback
            (:func:`ray_driver_on_loopback`): make Ray's node address the loopback one, so its services
            listen on 127.0.0.1 only instead of every interface. Never for a driver joining a cluster
            on the network, whose nodes must be able to reach it.
    """
    # Ray reports usage statistics by default; an audit tool must not phone home.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback:
        # On Linux this switch only changes the node-IP lookup to "localhost" (it is meant for laptops).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def require_ray(loopback: bool = True) -> ModuleType:
    """Import Ray and Ray Data, or fail at once with the install command.

    Args:
        loopback: See :func:`prepare_ray_environment`.

    Returns:
        The ``ray`` module.

    Raises:
        EngineUnavailable: Ray or Ray Data is not installed (or is broken).
    """
    import warnings

    prepare_ray_environment(loopback)
    try:
        with warnings.catch_warnings():
            # Ray's own imports raise DeprecationWarnings; they are not ours to act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            import ray
            import ray.data  # noqa: F401  (the extra is ray[data]; core Ray alone is not enough)
    except ImportError as exc:
        raise EngineUnavailable(
            f"--engine ray needs Ray Data, which is not installed ({exc}). Install the extra: {RAY_INSTALL_HINT}"
        ) from None
    # Ray modules keep raising DeprecationWarnings on use (not only on import); not ours to act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    return ray


def ray_driver_on_loopback(ray_address: str | None) -> bool:
    """Whether a Ray driver should take the loopback address as its node address.

    True for a private instance (no ``--ray-address``) and for a cluster reached on loopback
    (``127.0.0.1:6379``, ``localhost:…``): without it Ray rewrites a loopback address to the machine's
    network address, which a cluster started on loopback does not listen on — the driver then retried
    for minutes.
    """
    from .ray_env import is_loopback_address

    return not ray_address or is_loopback_address(ray_address)


def check_engine(engine: str | Engine, ray_address: str | None = None) -> Engine:
    """Validate an engine name and that it can run here; returns it as an :class:`Engine`.

    Raises:
        ValueError: Unknown engine name.
        EngineUnavailable: The engine's extra is missing.
        ClusterUnreachable: Nothing answers at ``ray_address`` (checked in seconds, before any work).
    """
    try:
        chosen = Engine(engine)
    except ValueError:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(e.value for e in Engine)}") from None
    if chosen is Engine.ray:
        require_ray(loopback=ray_driver_on_loopback(ray_address))
        if ray_address:
            from .ray_env import check_reachable

            try:
                check_reachable(ray_address)
            except (ConnectionError, ValueError) as exc:
                raise ClusterUnreachable(f"cannot reach the Ray cluster at {ray_address}: {exc}") from None
    return chosen


#: An engine's loop: ``(todo, options, processor) -> batches of finished rows`` (files on disk).
EngineLoop = Callable[..., Iterator[list[dict[str, Any]]]]


def engine_loop(engine: str | Engine) -> EngineLoop:
    """The loop of an engine, by name. The pipeline dispatches through this and imports no engine itself;
    the Ray engine's module (and Ray) is imported only when it is chosen."""
    chosen = Engine(engine)
    if chosen is Engine.local:
        from .local import run_local

        return run_local
    from .ray_engine import run_ray  # imports Ray lazily itself; only reached with --engine ray

    return run_ray


__all__ = ["ClusterUnreachable", "Engine", "EngineLoop", "EngineUnavailable", "RAY_INSTALL_HINT", "check_engine", "engine_loop",
           "prepare_ray_environment", "ray_driver_on_loopback", "require_ray"]
