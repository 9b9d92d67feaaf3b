"""Inputs on object storage: ``s3://``, ``gs://`` (and any pyarrow/fsspec filesystem URI, ``file://`` too).

Listing follows :func:`exposure_cli.discovery.discover`'s rules (sorted order, image extensions, hidden
names skipped, include/exclude globs on the path relative to its root, one unique key per object), so a
folder scanned as ``file:///data/photos`` gets exactly the report keys of ``/data/photos``.

Filesystems come from :func:`pyarrow.fs.FileSystem.from_uri` (S3 and GCS are built into the pyarrow
wheels and take their credentials from the usual environment: ``AWS_*``/``~/.aws``, Google application
default credentials); schemes pyarrow does not know are tried through fsspec when it is installed.
S3-compatible storage (MinIO, Ceph, R2, a local moto server) is reached through a custom endpoint:
``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) in the environment, or pyarrow's URI options
``s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http``; with one,
``AWS_EC2_METADATA_DISABLED=true`` is set unless the user set it
(:func:`exposure_cli.engines.ray_env.storage_env`).
Nothing here imports Ray; both engines read remote inputs through :class:`RemoteInput`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from ..decoding import DecodeError
from ..discovery import IMAGE_EXTENSIONS, InputFile, UniqueKeys, matches_any, safe_key

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_uri(path: object) -> bool:
    """True for ``scheme://…`` strings (``s3://b/k``, ``gs://b/k``, ``file:///x``); False for local paths."""
    return isinstance(path, str) and bool(_URI.match(path))


@dataclass(frozen=True)
class RemoteInput(InputFile):
    """An input object on a filesystem reached by URI.

    ``path`` is the object's path inside its filesystem (for error rows and the ``format`` column);
    the pipeline reads it through :meth:`read_bytes` and takes size and mtime from :meth:`facts`, as
    listed, instead of ``stat``-ing a local path.

    Attributes:
        filesystem_uri: The root URI the filesystem is opened from (cached per process).
        fs_path: The object's path inside that filesystem.
        size: Size in bytes from the listing.
        mtime: Modification time from the listing (ISO 8601, UTC, like local files).
    """

    filesystem_uri: str = ""
    fs_path: str = ""
    size: int | None = None
    mtime: str | None = None

    def read_bytes(self) -> bytes:
        """The whole object. Raises :class:`DecodeError` with a report-ready message."""
        try:
            fs = filesystem_for(self.filesystem_uri)[0]
            with fs.open_input_stream(self.fs_path) as stream:
                return stream.readall()
        except FileNotFoundError:
            raise DecodeError("object not found (removed during the scan?)") from None
        except PermissionError:
            raise DecodeError("permission denied: cannot read the object") from None
        except OSError as exc:
            raise DecodeError(f"cannot read the object: {exc}") from None

    def facts(self) -> dict[str, Any]:
        """``size_bytes`` and ``mtime`` columns, from the listing."""
        return {"size_bytes": self.size, "mtime": self.mtime}


@functools.lru_cache(maxsize=64)
def filesystem_for(uri: str):
    """``(filesystem, path)`` for a URI; filesystems are cached per process (S3 clients are costly).

    Raises:
        ValueError: No filesystem implementation knows the URI's scheme.
    """
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as arrow_error:  # pyarrow raises ArrowInvalid / ArrowNotImplementedError
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"cannot open {uri}: {arrow_error} (installing fsspec may add this scheme)") from None
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except Exception as exc:
            raise ValueError(f"cannot open {uri}: {exc}") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text = value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def _label(uri: str) -> str:
    parts = [p for p in urlsplit(uri).path.split("/") if p]
    return parts[-1] if parts else (urlsplit(uri).netloc or "root")


def discover_uris(
    uris: Sequence[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    include_hidden: bool = False,
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> Iterator[RemoteInput]:
    """Yield the objects under `uris` (folders/prefixes and single objects), as discovery does locally.

    A root that cannot be listed (no credentials, no such bucket) becomes one input with ``problem``
    set, so it shows up as a report row instead of vanishing.

    Raises:
        ValueError: A local path mixed with URIs, or a scheme no filesystem knows.
    """
    import pyarrow.fs as pafs

    from .ray_env import storage_env

    local = [u for u in uris if not is_uri(u)]
    if local:
        raise ValueError(f"cannot mix local paths and URIs in one scan ({local[0]!r}); "
                         "scan them separately or give local folders as file:// URIs")
    storage_env(uris)  # before the first filesystem is opened (the AWS SDK reads it then)
    labels: list[str] = []
    used: set[str] = set()
    unique = UniqueKeys()

    infos: list[tuple[str, Any, str, Any]] = []  # (uri, fs, root path, root FileInfo | error text)
    for uri in uris:
        fs, root = filesystem_for(uri)
        root = root.rstrip("/") or root
        try:
            info: Any = fs.get_file_info(root)
        except OSError as exc:
            info = f"cannot list: {exc}"
        infos.append((uri, fs, root, info))
    for uri, _fs, _root, info in infos:
        if len(uris) > 1 and not isinstance(info, str) and info.type == pafs.FileType.Directory:
            base, label, n = _label(uri), _label(uri), 1
            while label in used:
                n += 1
                label = f"{base}~{n}"
            used.add(label)
            labels.append(label)
        else:
            labels.append("")

    seen_objects: set[tuple[str, str]] = set()
    for (uri, fs, root, info), label in zip(infos, labels):
        prefix = [label] if label else []
        fs_key = uri  # the filesystem is re-opened from the root URI on workers

        def make(fs_path: str, rel: str, problem: str | None = None, size=None, mtime=None) -> RemoteInput:
            return RemoteInput(path=Path(fs_path), key=unique(safe_key(prefix + [rel])), root=Path(root),
                               problem=problem, filesystem_uri=fs_key, fs_path=fs_path,
                               size=None if size is None or size < 0 else int(size), mtime=_iso_utc(mtime))

        name = root.rsplit("/", 1)[-1]
        if isinstance(info, str):
            yield make(root, name or "_", problem=info)
            continue
        if info.type == pafs.FileType.NotFound:
            if exclude and matches_any(exclude, name) or include and not matches_any(include, name):
                continue
            yield make(root, name, problem="file not found")
            continue
        if info.type == pafs.FileType.File:
            if exclude and matches_any(exclude, name) or include and not matches_any(include, name):
                continue
            if (uri, root) not in seen_objects:
                seen_objects.add((uri, root))
                yield make(root, name, size=info.size, mtime=info.mtime)
            continue
        try:
            listing = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
        except OSError as exc:
            yield make(root, name or "_", problem=f"cannot list: {exc}")
            continue
        for entry in sorted(listing, key=lambda e: e.path):
            if entry.type != pafs.FileType.File:
                continue
            rel = entry.path[len(root):].lstrip("/")
            if not include_hidden and any(part.startswith(".") for part in rel.split("/")):
                continue
            if exclude and matches_any(exclude, rel):
                continue
            if Path(rel).suffix.lower() not in extensions:
                continue
            if include and not matches_any(include, rel):
                continue
            yield make(entry.path, rel, size=entry.size, mtime=entry.mtime)


__all__ = ["RemoteInput", "discover_uris", "filesystem_for", "is_uri"]
