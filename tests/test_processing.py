"""The unit of work (processing.BatchProcessor): the batched model and each photo's finishing step.

The scan splits an analyzer's work: ``prepare`` on the decode threads, the batched part on the model
thread, each map's finishing step on the finishing threads. These tests check that ``process`` (the Ray
workers' path) and ``submit`` (the local engine's) give the same rows, and that a failure in any part
fails only the photos it concerns.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from exposure_cli.analyzers import create_analyzer
from exposure_cli.analyzers.base import Analyzer, AnalyzerInfo
from exposure_cli.discovery import InputFile
from exposure_cli.processing import BatchProcessor, Decoded
from exposure_cli.stats import Thresholds


def decoded(tmp_path: Path, n: int, seed: int = 0) -> list[Decoded]:
    from exposure_cli.decoding import DecodedImage
    from exposure_cli.exif import ExifFacts

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rgb = rng.random((48, 64, 3), dtype=np.float32)
        p = tmp_path / f"p{i}.jpg"
        p.write_bytes(b"x")
        img = DecodedImage(rgb=rgb, width=64, height=48, format="jpeg", exif=ExifFacts(), bit_depth=8)
        out.append(Decoded(InputFile(p, p.name, tmp_path), image=img))
    return out


def comparable(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and np.isnan(v) else v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in row.items()}


def test_process_and_submit_give_the_same_rows_prepared_or_not(tmp_path):
    proc = BatchProcessor(create_analyzer("baseline"), Thresholds(), regions=("face", "sky"))
    batch = decoded(tmp_path, 3)
    rows, _ = proc.process(batch)
    prepared = [proc.prepare(d) for d in batch]  # the same photos, prepared as a decode thread does
    with ThreadPoolExecutor(2) as pool:
        submitted = [f.result() for f in proc.submit(prepared, pool)]
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [comparable(r) for r in rows] == [comparable(r) for r in submitted]


class _FailsOnSecond(Analyzer):
    """The batched part succeeds; the second photo's finishing step raises."""

    working_long_side = 64

    @property
    def info(self) -> AnalyzerInfo:
        return AnalyzerInfo("fails", "1")

    def analyze_batch(self, images):
        return [f() for f in self.analyze_split(images)]

    def analyze_split(self, images, prepared=None):
        def finish(i, image_grey=None):
            if i == 1:
                raise RuntimeError("boom")
            return np.zeros(images[i].shape[:2], np.float32)

        return [lambda i=i, image_grey=None: finish(i, image_grey) for i in range(len(images))]


def test_a_failing_finishing_step_fails_that_photo_only(tmp_path):
    proc = BatchProcessor(_FailsOnSecond(), Thresholds(), regions=False)
    rows, _ = proc.process(decoded(tmp_path, 3))
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error"] == "analyzer failed: boom"
    with ThreadPoolExecutor(2) as pool:
        rows = [f.result() for f in proc.submit(decoded(tmp_path, 3, seed=1), pool)]
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]


class _NaNOnSecond(_FailsOnSecond):
    """The second photo's map has a NaN pixel: invalid input to the statistics."""

    def analyze_split(self, images, prepared=None):
        def finish(i):
            residual = np.zeros(images[i].shape[:2], np.float32)
            if i == 1:
                residual[3, 4] = np.nan
            return residual

        return [lambda i=i, image_grey=None: finish(i) for i in range(len(images))]


def test_a_residual_map_with_nan_fails_that_photo_only(tmp_path):
    proc = BatchProcessor(_NaNOnSecond(), Thresholds(), regions=False)
    rows, _ = proc.process(decoded(tmp_path, 3))
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error"].startswith("analysis failed: ValueError: residual map contains NaN (1 of ")
    with ThreadPoolExecutor(2) as pool:
        rows = [f.result() for f in proc.submit(decoded(tmp_path, 3, seed=1), pool)]
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error"].startswith("analysis failed: ValueError: residual map contains NaN")
