"""How this package compiles its numba kernels (the ``fast`` extra): one decorator for every module.

``kernel(**options)`` is ``numba.njit(cache=True, nogil=True, **options)``. No fastmath anywhere: every
float32 and float64 operation of a kernel happens as written, in that order, so a kernel can equal a numpy
expression bit for bit. Where numba finds no writable cache directory at all (not next to the module, not
its per-user cache, not ``NUMBA_CACHE_DIR``) it refuses ``cache=True`` when the module is imported; then
the kernels compile in every process instead, with a warning.

Importing this module does not import numba; decorating with :func:`kernel` does (``ImportError`` without
it), and :func:`fused_kernel` answers None until something has loaded numba, so callers keep their numpy path.
"""

from __future__ import annotations

import functools
import sys
import warnings


def kernel(what: str = "this kernel", **options):
    """Decorator: ``njit(cache=True, nogil=True, **options)``, or without the cache (and a warning naming
    `what`) where numba has nowhere to write one."""

    from numba import njit

    def decorate(function):
        try:
            return njit(cache=True, nogil=True, **options)(function)
        except RuntimeError:  # numba: "cannot cache function …: no locator available"
            warnings.warn(f"numba has no writable cache directory (set NUMBA_CACHE_DIR): {what} compiles in "
                          "every process (several seconds)", RuntimeWarning, stacklevel=2)
            return njit(nogil=True, **options)(function)

    return decorate


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


__all__ = ["fused_kernel", "kernel"]
