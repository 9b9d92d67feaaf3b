"""Stdout that carries the report and nothing else (``exposure scan … --out -``)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator, TextIO


@contextlib.contextmanager
def stdout_for_report(enabled: bool = True) -> Iterator[TextIO | None]:
    """Reserve the process's standard output for the report while the block runs.

    Yields a text stream on the real standard output for the report writer; meanwhile file
    descriptor 1 points at standard error, so whatever else is printed — Ray's ``(raylet) … worker died``
    lines (written by its C++ core and log threads straight to fd 1), a library's ``print`` — lands on
    stderr instead of inside the CSV/JSONL a pipe is reading. Restored on the way out.

    Yields None when disabled, and ``sys.stdout`` itself when it is not a real file (a test runner's
    capture, a notebook): there is no descriptor to keep clean then.
    """
    if not enabled:
        yield None
        return
    try:
        fd = sys.stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        yield sys.stdout
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    report = os.fdopen(saved, "w", encoding="utf-8", newline="", closefd=True)
    os.dup2(err_fd, fd)
    try:
        yield report
    finally:
        try:
            report.flush()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()  # what went to stderr meanwhile
            os.dup2(saved, fd)
            report.close()


__all__ = ["stdout_for_report"]
