"""Which fused kernels (:mod:`exposure_cli.fused`) a caller may use now: the lookup, apart from the kernels
themselves so that asking never imports numba (and no module imports back into the kernels' module)."""

from __future__ import annotations

import functools
import sys


def fused_kernel(name: str):
    """The kernel `name` of :mod:`exposure_cli.fused` once numba is loaded in this process, else None (the
    caller runs its numpy reference, which gives the same bits).

    Importing numba costs ≈ 0.8 s, more than a small scan saves with these kernels, so they are not a
    reason to import it: they start being used when something that needs numba anyway has loaded it — the
    face detector, on a scan's first photo with regions — and then cost ≈ 80 ms to load from numba's cache.
    Without numba (the ``fast`` extra), or with one that refuses this numpy, it stays None."""
    if "numba" not in sys.modules:
        return None
    return _loaded_kernel(name)


@functools.lru_cache(maxsize=None)
def _loaded_kernel(name: str):
    try:
        from . import fused
    except ImportError:
        return None
    return getattr(fused, name)


__all__ = ["fused_kernel"]
