"""How this package compiles its numba kernels (the ``fast`` extra): one decorator for every module.

``kernel(**options)`` is ``numba.njit(cache=True, nogil=True, **options)``. No fastmath anywhere: every
float32 and float64 operation of a kernel happens as written, in that order, so a kernel can equal a numpy
expression bit for bit. Where numba finds no writable cache directory at all (not next to the module, not
its per-user cache, not ``NUMBA_CACHE_DIR``) it refuses ``cache=True`` when the module is imported; then
the kernels compile in every process instead, with a warning.

Importing this module does not import numba; decorating with :func:`kernel` does (``ImportError`` without
it), and :func:`exposure_cli._kernels.fused_kernel` answers None until something has loaded numba.
"""

from __future__ import annotations

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


__all__ = ["kernel"]
