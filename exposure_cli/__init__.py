"""exposure-cli: audit the exposure of photos at scale.

The library does the work; the ``exposure`` command is a thin Typer layer over it. Heavy imports (torch,
OpenCV, pyarrow) happen inside the functions that need them, so ``import exposure_cli`` is cheap.
"""

from ._version import __version__

__all__ = ["__version__", "scan", "analyze_image"]


def __getattr__(name: str):
    if name == "scan":
        from .pipeline import scan

        return scan
    if name == "analyze_image":
        from .pipeline import analyze_image

        return analyze_image
    raise AttributeError(name)
