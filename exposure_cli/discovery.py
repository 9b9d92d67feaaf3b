"""Find the photos to scan: several roots, filters, deterministic order, no surprises.

* Folders are walked recursively (sorted by name at every level, so the order is deterministic);
  files given explicitly are always taken, whatever their extension.
* Extensions are matched case-insensitively; ``--include``/``--exclude`` globs match the path relative
  to its root (and the bare file name).
* Hidden files and folders (a leading dot) are skipped unless asked.
* Symlinks are not followed out of the given roots unless ``follow_symlinks``; a symlinked folder is
  descended only when following; loops are survived by remembering visited (device, inode) pairs.
* Inputs that cannot be scanned (broken symlink, symlink loop, symlink escaping the roots, a FIFO or
  device named like a photo, unreadable folder) are still yielded, with ``problem`` set, so they become a
  report row instead of vanishing. A FIFO is never opened (reading it would block forever).
* A folder named like a photo (``x.jpg/``) is a folder: it is walked, and gets no row of its own.
* The output folder is never scanned.
* POSIX names are bytes: a name that is not valid UTF-8 gets a readable key (each undecodable byte as
  ``\\xNN``) and, in ``path_bytes``, its exact bytes (percent-encoded), so it gets its row like any other.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import quote

from .formats import CORE_EXTENSIONS, HEIF_EXTENSIONS, IMAGE_EXTENSIONS, RAW_EXTENSIONS, file_kind  # noqa: F401


@dataclass(frozen=True)
class InputFile:
    """One input to scan.

    Attributes:
        path: Filesystem path to open.
        key: Unique, safe, POSIX-style relative path used in the report (``path`` column) and for
            mirrored outputs (overlays, maps). Never absolute, never contains ``..``.
        root: The root it was found under (a folder, or the parent of an explicit file).
        problem: Why it cannot be scanned, if discovery already knows (it still gets a report row).
        path_bytes: For a name that is not valid UTF-8: the exact bytes of the key's path (before any
            ``~N``), percent-encoded (``urllib.parse.unquote_to_bytes`` gives them back); else None.
    """

    path: Path
    key: str
    root: Path
    problem: str | None = None
    path_bytes: str | None = None


def readable_text(text: str) -> str:
    """Valid Unicode for any name: a lone surrogate (an undecodable byte, as Python decodes a POSIX name)
    becomes ``\\xNN`` (that byte), any other one ``\\uXXXX``. Valid text comes back unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(
            c if not "\ud800" <= c <= "\udfff"
            else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else f"\\u{ord(c):04x}"
            for c in text
        )


def lossless_path(parts: Iterable[str]) -> str | None:
    """Percent-encoded bytes of a relative path whose names are not valid UTF-8 (None when they are)."""
    joined = "/".join(parts)
    if readable_text(joined) == joined:
        return None
    return quote(os.fsencode(joined), safe="/")


def safe_key(parts: Iterable[str]) -> str:
    """Join path components into a relative key that cannot escape an output folder (valid Unicode)."""
    clean = []
    for part in parts:
        for piece in part.replace("\\", "/").split("/"):
            if piece in ("", ".", ".."):
                continue
            clean.append(readable_text(piece))
    return "/".join(clean) or "_"


class UniqueKeys:
    """Hands out report keys, suffixing ``~2``, ``~3``… when a key was already given out."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, key: str) -> str:
        candidate, n = key, 1
        while candidate in self.seen:
            n += 1
            candidate = f"{key}~{n}"
        self.seen.add(candidate)
        return candidate


def matches_any(patterns: Sequence[str], rel: str) -> bool:
    """Whether `rel` (a relative path) or its file name matches any of the glob `patterns`."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _within(path: Path, roots: Sequence[Path]) -> bool:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return any(real == r or r in real.parents for r in roots)


def missing_inputs(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The local paths in `paths` that do not exist at all (URIs such as ``s3://`` are not checked)."""
    return [str(p) for p in paths if "://" not in str(p) and not os.path.lexists(p)]


def discover(
    paths: Sequence[str | os.PathLike],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    include_hidden: bool = False,
    follow_symlinks: bool = False,
    exclude_dirs: Sequence[str | os.PathLike] = (),
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> Iterator[InputFile]:
    """Yield the inputs under `paths`, in a deterministic order, each key unique.

    Args:
        paths: Folders and files. Explicit files are always taken.
        include: Globs; when given, only matching files are taken (explicit files included).
        exclude: Globs; matching files and folders are skipped.
        recursive: Descend into sub-folders.
        include_hidden: Also take names starting with a dot.
        follow_symlinks: Follow symlinked folders and files even when they lead out of the roots.
        exclude_dirs: Folders never scanned (the output folder).
        extensions: Lower-case extensions taken while walking.
    """
    excluded_real = set()
    for d in exclude_dirs:
        try:
            excluded_real.add(Path(d).resolve())
        except OSError:
            pass
    roots: list[Path] = []
    for p in paths:
        path = Path(p)
        roots.append(path if path.is_dir() else path.parent)
    real_roots = []
    for r in roots:
        try:
            real_roots.append(r.resolve())
        except OSError:
            pass
    labels = _root_labels(paths)
    seen_paths: set[str] = set()  # the same file reached twice (a folder and an explicit file) → one row

    def first_time(path: Path) -> bool:
        ident = os.path.abspath(path)
        if ident in seen_paths:
            return False
        seen_paths.add(ident)
        return True

    unique = UniqueKeys()

    for p, label in zip(paths, labels):
        path = Path(p)
        prefix = [label] if label else []
        if path.is_dir():
            for rel, full, problem in _walk(
                path, recursive, include_hidden, follow_symlinks, excluded_real, real_roots, extensions
            ):
                if exclude and matches_any(exclude, rel):
                    continue
                if include and not matches_any(include, rel):
                    continue
                if not first_time(full):
                    continue
                yield InputFile(full, unique(safe_key(prefix + [rel])), path, problem, lossless_path(prefix + [rel]))
        else:
            name = path.name
            if exclude and matches_any(exclude, name):
                continue
            if include and not matches_any(include, name):
                continue
            problem = None
            if not os.path.lexists(path):
                problem = "file not found"
            elif path.is_symlink() and not path.exists():
                problem = _broken_link_problem(path)
            elif path.exists() and not path.is_file():
                problem = f"not a regular file ({file_kind(path.stat().st_mode)})"
            if not first_time(path):
                continue
            yield InputFile(path, unique(safe_key(prefix + [name])), path.parent, problem,
                            lossless_path(prefix + [name]))


def _broken_link_problem(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (following the link never reaches a file)"
    return "broken symlink"


def _root_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Key prefixes: none for a single folder root; the folder name per root when there are several."""
    if len(paths) == 1:
        return [""]
    labels, used = [], set()
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            labels.append("")
            continue
        base = path.resolve().name or "root"
        label, n = base, 1
        while label in used:
            n += 1
            label = f"{base}~{n}"
        used.add(label)
        labels.append(label)
    return labels


def _walk(root, recursive, include_hidden, follow_symlinks, excluded_real, real_roots, extensions):
    """Yield (relative posix path, full path, problem) for files under root, sorted by name.

    Only names with one of `extensions` are yielded (a broken link named ``notes.txt`` is no photo);
    folders that cannot be read are yielded with their problem whatever their name.
    """
    visited: set[tuple[int, int]] = set()

    def visit(folder: Path, rel_parts: list[str]):
        try:
            st = folder.stat()
        except OSError as exc:
            yield "/".join(rel_parts) or ".", folder, f"cannot read folder: {exc.strerror or exc}"
            return
        ident = (st.st_dev, st.st_ino)
        if ident in visited:  # symlink loop or the same folder twice
            return
        visited.add(ident)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield "/".join(rel_parts) or ".", folder, f"cannot list folder: {exc.strerror or exc}"
            return
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            full = Path(entry.path)
            rel = "/".join(rel_parts + [entry.name])
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_link, is_dir = True, False
            if is_dir:
                if not recursive:
                    continue
                if is_link and not follow_symlinks and not _within(full, real_roots):
                    continue
                if is_link and not follow_symlinks:
                    continue  # inside the roots: the target folder is walked on its own path
                try:
                    if full.resolve() in excluded_real:
                        continue
                except OSError:
                    continue
                yield from visit(full, rel_parts + [entry.name])
                continue
            if Path(entry.name).suffix.lower() not in extensions:
                continue
            problem = None
            if is_link:
                if not os.path.exists(full):
                    problem = _broken_link_problem(full)
                elif not follow_symlinks and not _within(full, real_roots):
                    problem = "symlink points outside the scanned folders (use --follow-symlinks to scan it)"
            if problem is None:
                try:
                    # is_file() comes from the directory entry (no system call for plain files).
                    if not entry.is_file(follow_symlinks=True):
                        # A FIFO named like a photo would block the reader forever: never open it.
                        problem = f"not a regular file ({file_kind(os.stat(full).st_mode)})"
                except OSError as exc:
                    problem = f"cannot stat: {exc.strerror or exc}"
            yield rel, full, problem

    yield from visit(root, [])
