"""The analyzer interface: a batch of photos in, one per-pixel exposure residual map per photo out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

#: Working long side of an analyzer that is given none and has no weights card saying otherwise.
DEFAULT_WORKING_LONG_SIDE = 512


@dataclass(frozen=True)
class AnalyzerInfo:
    """What a report records about the analyzer that produced its maps."""

    name: str
    version: str
    weights_sha256: str = ""
    working_long_side: int = DEFAULT_WORKING_LONG_SIDE
    extra: dict[str, str] = field(default_factory=dict)


class Analyzer(ABC):
    """Turns photos into residual maps in the IEA40K convention.

    Input images are RGB float32 arrays in [0, 1], shape H×W×3, already EXIF-oriented, of any size. The
    output for each is an H×W float32 map of ``r = grey(ideal) − grey(observed)`` in [-1, 1] at the *same*
    size as the input (``r < 0`` over-exposed, ``r > 0`` under-exposed).
    """

    #: Long side the analyzer works at; the decoder may decode large JPEGs at a reduced scale down to it.
    working_long_side: int = DEFAULT_WORKING_LONG_SIDE

    @property
    @abstractmethod
    def info(self) -> AnalyzerInfo: ...

    @abstractmethod
    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Residual maps for a batch of images (any mix of sizes)."""

    @property
    def ev_calibration(self):
        """Gain and offset applied to the stops of correction estimated from this analyzer's maps
        (:class:`exposure_cli.correction.EVCalibration`; identity unless the weights' card has one)."""
        from ..correction import IDENTITY

        return IDENTITY

    def analyze(self, image: np.ndarray) -> np.ndarray:
        """Residual map of one image."""
        return self.analyze_batch([image])[0]

    def prepare(self, image: np.ndarray) -> Any:
        """Per-photo work before the batched model that any thread may do (a scan does it on its decode
        threads); its result goes to :meth:`analyze_split`. None: nothing to prepare."""
        return None

    def analyze_split(self, images: Sequence[np.ndarray],
                      prepared: Sequence[Any] | None = None) -> list[Callable[[], np.ndarray]]:
        """:meth:`analyze_batch` in two parts, so that a scan keeps only the batched part on its model thread.

        The batched part runs now; each returned callable finishes one photo's map (per-photo work that a
        scan runs on its finishing threads). Calling them in order gives exactly ``analyze_batch(images)``.
        Each takes an optional keyword ``image_grey``, the photo's :func:`exposure_cli.color.grey`, which
        it may use instead of computing it again (the scan needs it for its statistics anyway).

        Args:
            images: As for :meth:`analyze_batch`.
            prepared: :meth:`prepare`'s result for each image (None entries, or None: not prepared).
        """
        maps = self.analyze_batch(images)
        return [(lambda m=m, image_grey=None: m) for m in maps]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (GPU memory, threads)."""
