"""Errors shared by the scan's modules (the pipeline, the output folder's state, the engines)."""

from __future__ import annotations


class ScanError(RuntimeError):
    """A scan-level failure (bad output folder, lock held, disk full); the message is user-facing."""


__all__ = ["ScanError"]
