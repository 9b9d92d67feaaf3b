"""One way to replace a file: write a temporary, flush, fsync, rename over the target, fsync the folder.

Every file the tool writes whole (reports, their sidecars, overlays, maps, HTML pages, weights,
checkpoints, the scan's state) goes through :func:`atomic_write`, so that

* a reader sees the old file or the new one, never half of one (``rename`` is atomic);
* after the call returns, the new content survives a power cut: the data is fsynced *before* the rename
  (else the rename can reach the disk first and leave an empty file under the target's name), and the
  folder is fsynced *after* it (else the rename itself can be lost);
* a failure (full disk, encoder error, Ctrl-C) leaves the target untouched and no temporary behind;
* links are never followed: the temporary is created with ``O_EXCL | O_NOFOLLOW`` under a fresh random
  name, and ``rename`` replaces a link planted at the target's name instead of writing through it.

The temporary is ``.<name>.<random>.tmp`` beside the target (its name is shortened when the target's is
near the file-name limit, so a target that fits can always be written).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable

#: Longest file name (bytes) most file systems accept.
NAME_MAX = 255
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_name(name: str) -> str:
    """A fresh temporary name for ``name`` in the same folder, never longer than :data:`NAME_MAX` bytes."""
    token = secrets.token_hex(4)
    raw = os.fsencode(name)
    room = NAME_MAX - len(f"..{token}.tmp")
    if len(raw) > room:
        raw = raw[:room]
    return f".{os.fsdecode(raw)}.{token}.tmp"


def fsync_dir(folder: str | os.PathLike | None = None, *, dir_fd: int | None = None) -> None:
    """Make a folder's entries (a rename, a new file) durable. File systems that cannot are tolerated."""
    fd = dir_fd if dir_fd is not None else os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        if dir_fd is None:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, dir_fd: int | None = None,
                 mode: int = 0o666, before_rename: Callable[[os.stat_result], None] | None = None) -> Any:
    """Replace ``path`` with what ``write(fh)`` writes into a binary file object; returns what it returns.

    Args:
        path: The target. With ``dir_fd``, a bare name inside that open folder (used for the scan's state
            folder, which is opened once and checked, see :mod:`exposure_cli.outdir`).
        write: Writes the content into the file object it is given (it must not close it).
        dir_fd: An open folder the target lives in.
        mode: Permission bits of the new file (before the umask).
        before_rename: Called with the new file's ``fstat`` once it is durable, just before the rename
            (the rename keeps that identity), e.g. to record it.

    Raises:
        OSError: From the file system (the target is then unchanged and no temporary is left).
    """
    path = Path(path)
    if dir_fd is None:
        folder = path.parent
        tmp = folder / temp_name(path.name)
        src, dst = os.fspath(tmp), os.fspath(path)
    else:
        if path.name != os.fspath(path):
            raise ValueError(f"with dir_fd, the target must be a bare name: {path}")
        src, dst = temp_name(path.name), path.name
    fd = os.open(src, _CREATE_FLAGS, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            result = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if before_rename is not None:
                before_rename(os.fstat(fh.fileno()))
        os.replace(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        # A half-written file on a full disk only takes the space a retry needs.
        with contextlib.suppress(OSError):
            os.unlink(src, dir_fd=dir_fd)
        raise
    if dir_fd is None:
        fsync_dir(path.parent)
    else:
        fsync_dir(dir_fd=dir_fd)
    return result


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, dir_fd: int | None = None) -> None:
    """:func:`atomic_write` of a bytes object."""
    atomic_write(path, lambda fh: fh.write(data), dir_fd=dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str, *, dir_fd: int | None = None) -> None:
    """:func:`atomic_write` of text, as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), dir_fd=dir_fd)


__all__ = ["NAME_MAX", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "temp_name"]
