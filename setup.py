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
    """``build_py`` that also copies weights/**/*.safetensors and weights/**/*.json into the package (the
    main weights and, in a subfolder, the thumbnail weights their card names)."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "exposure_cli" / "_weights"
        files = [p for p in sorted(WEIGHTS_SOURCE.rglob("*")) if p.is_file() and p.suffix in SHIPPED_SUFFIXES]
        for src in files:
            dest = target / src.relative_to(WEIGHTS_SOURCE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


setup(cmdclass={"build_py": BuildPyWithWeights})
