"""Build hook: ship the top-level ``weights/`` folder inside the wheel as ``exposure_cli/_weights/``.

All metadata lives in pyproject.toml; this file only extends ``build_py`` so a non-editable install
(``pip install .``) carries the default EAT weights + card, found at runtime through
``importlib.resources.files("exposure_cli") / "_weights"``. An editable install reads ``weights/`` of
the checkout instead (see exposure_cli/weights.py).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEIGHTS_SOURCE = Path(__file__).resolve().parent / "weights"
SHIPPED_SUFFIXES = {".safetensors", ".json"}


class BuildPyWithWeights(build_py):
    """``build_py`` that also copies weights/*.safetensors and weights/*.json into the package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "exposure_cli" / "_weights"
        files = [p for p in sorted(WEIGHTS_SOURCE.glob("*")) if p.suffix in SHIPPED_SUFFIXES]
        if files:
            target.mkdir(parents=True, exist_ok=True)
        for src in files:
            shutil.copy2(src, target / src.name)


setup(cmdclass={"build_py": BuildPyWithWeights})
