"""The output folder's state: the lock, the journal, resume keys, finalisation and the link rules.

Layout of ``OUT`` (``exposure scan … --out OUT``)::

    report.parquet | report.csv | report.jsonl   the report, rebuilt from the journal at the end
    report.meta.json                             its metadata (the sidecar of CSV and JSONL reports)
    overlays/…, maps/…                           per-photo files, mirroring the report's keys
    .exposure/                                   the state folder, ours alone:
        lock                                     held (flock) by the one scan writing to OUT; "pid N"
        journal.jsonl                            every finished row, appended and fsynced per batch
        scan.json                                the scan's metadata, compared on --resume
        outputs.json                             the files this tool wrote in OUT, with their identity

The contract, in one place:

1. **Links.** ``OUT`` itself may be a symlink; it is opened once and everything else is reached through
   that open folder. Nothing inside it is followed: ``.exposure`` must be a real folder, owned by the
   user running the scan and not writable by others, or the scan refuses to use it; ``lock``,
   ``journal.jsonl``, ``scan.json`` and ``outputs.json`` are opened with ``O_NOFOLLOW`` relative to the
   opened state folder and must be regular files; reports and sidecars are replaced by ``rename``
   (:func:`exposure_cli.atomic.atomic_write`), which replaces a link planted at their name rather than
   writing through it; overlay and map paths must resolve inside ``OUT/overlays`` / ``OUT/maps``
   (:func:`output_path`).
2. **One writer.** A scan holds ``lock`` (``flock``, non-blocking) from before it reads the state until
   the report is final; a second scan on the same folder is refused with the holder's pid.
3. **The journal is the truth.** A row is finished when :meth:`Journal.append` returns: the rows are
   written in one ``write`` and fsynced. A scan killed at any moment loses at most the batch in flight; a
   torn last line is ignored when read and cut off when the journal is opened again; an append that
   fails (full disk) is cut back to the last whole row, so later rows cannot be glued onto a torn one.
4. **Resume equals a fresh scan of the inputs as they are now.** Each journal row carries its input's
   fingerprint (size, modification time in ns, inode). On ``--resume`` an input is skipped only when its
   key has a row whose fingerprint matches the file now; a changed file is scanned again; rows of keys
   that are no longer inputs (deleted files, another set of roots that keys the files differently,
   changed filters) stay in the journal but not in the report. The options that change a row's values
   (analyzer, thresholds, rule sets, regions) must be those of the journaled scan, or ``--resume`` is
   refused. A different ``--format`` writes the report in the new format and removes the old one.
5. **Finalisation.** The report is rebuilt from the journal (last row per key wins, sorted by key, only
   the current keys) into a temporary file, fsynced and renamed into place; readers never see half a
   report, and a full disk leaves the previous report and no temporary.
6. **Overwrite deletes only what we wrote.** ``--overwrite`` clears the state folder and removes the
   report files recorded in ``outputs.json`` whose identity still matches (a folder from before that
   file existed: report files beside a journal). A ``report.*`` file the tool did not write, or that
   was changed since, makes the scan refuse instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .atomic import atomic_write, atomic_write_text
from .errors import ScanError

STATE_DIR = ".exposure"
LOCK_NAME = "lock"
JOURNAL_NAME = "journal.jsonl"
SCAN_NAME = "scan.json"
OUTPUTS_NAME = "outputs.json"
#: The key of a journal row that holds its input's fingerprint (never a report column).
FINGERPRINT_KEY = "_fp"
#: Scan metadata that must match the journaled scan for --resume (they change a row's values).
COMPARED_META = ("analyzer", "thresholds", "rule_sets", "regions")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


# ------------------------------------------------------------------------------------------ link rules


def output_path(out_dir: Path, kind: str, key: str, suffix: str) -> Path:
    """``out_dir/kind/key+suffix``, guaranteed to stay inside ``out_dir/kind``.

    Only ``out_dir`` itself may be a symlink: a symlinked ``kind`` folder or sub-folder that leads
    elsewhere (planted in an output folder) is refused like ``..`` or an absolute key.
    """
    base = Path(out_dir).resolve() / kind
    target = (base / (key + suffix)).resolve()
    if base not in target.parents:
        raise ScanError(f"refusing to write outside {base}: {key!r}")
    return target


def check_inputs_vs_out(paths: Sequence[str], out_dir: Path) -> None:
    """Refuse an output folder that is one of the scanned folders (or holds an explicit input)."""
    out_real = Path(out_dir).resolve()
    for p in paths:
        try:
            real = Path(p).resolve()
        except OSError:
            continue
        if real.is_file() and real.parent == out_real:
            raise ScanError(f"{p} is inside the output folder {out_dir}; choose another --out")
        if real.is_dir() and real == out_real:
            # The report, overlays/ and maps/ would land among the photos, and the next scan would
            # take its own overlays for photos.
            raise ScanError(f"the output folder {out_dir} is the scanned folder {p}; choose another --out "
                            "(a folder inside it is fine)")


def _not_ours(out_dir: Path, what: str) -> ScanError:
    return ScanError(f"{Path(out_dir) / STATE_DIR} was not created by exposure-cli ({what}); refusing to use it. "
                     "Remove it, or choose another --out")


def _open_state_dir(out_fd: int, out_dir: Path, create: bool) -> int | None:
    """The checked state folder, opened (or None when it does not exist and ``create`` is false)."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(STATE_DIR, 0o755, dir_fd=out_fd)
    try:
        fd = os.open(STATE_DIR, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=out_fd)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if exc.errno == errno.ELOOP or os.path.islink(out_dir / STATE_DIR) else "not a folder"
            raise _not_ours(out_dir, f"it is {kind}") from None
        raise
    st = os.fstat(fd)
    problem = None
    if st.st_uid != os.geteuid():
        problem = f"it belongs to user id {st.st_uid}, not to this user ({os.geteuid()})"
    elif st.st_mode & stat.S_IWOTH:
        problem = "anyone may write to it"
    if problem:
        os.close(fd)
        raise _not_ours(out_dir, problem)
    return fd


def _open_state_file(name: str, dir_fd: int, flags: int, out_dir: Path) -> int:
    """Open a file of the state folder without following a link; it must be a regular file."""
    try:
        fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ScanError(f"{Path(out_dir) / STATE_DIR / name} is a symbolic link; exposure-cli never "
                            "follows links in its state folder. Remove it, or choose another --out") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ScanError(f"{Path(out_dir) / STATE_DIR / name} is not a regular file; remove it, or choose "
                        "another --out")
    return fd


def _read_state_json(name: str, dir_fd: int | None, out_dir: Path) -> dict[str, Any] | None:
    if dir_fd is None:
        return None
    try:
        fd = _open_state_file(name, dir_fd, os.O_RDONLY, out_dir)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------------------------- journal


def row_fingerprint(row: Mapping[str, Any]) -> Any:
    return row.get(FINGERPRINT_KEY)


@dataclass(frozen=True)
class JournalEntry:
    """What the journal knows about one key: the last row's status and its input's identity."""

    status: str
    fingerprint: str | None
    size_bytes: Any = None
    mtime: Any = None


class Journal:
    """Append-only JSONL journal of finished rows (see the module docstring, rule 3).

    Args:
        out_dir: The output folder.
        state_fd: The state folder, already opened and checked (by :class:`OutputFolder`); without it the
            journal opens and checks the state folder itself for each operation.
    """

    def __init__(self, out_dir: str | os.PathLike, *, state_fd: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / STATE_DIR
        self.path = self.dir / JOURNAL_NAME
        self._state_fd = state_fd
        self._fd: int | None = None
        self._own_state_fd: int | None = None

    @contextlib.contextmanager
    def _state(self, create: bool = False) -> Iterator[int | None]:
        if self._state_fd is not None:
            yield self._state_fd
            return
        out_fd = os.open(self.out_dir, os.O_RDONLY | _DIRECTORY | _CLOEXEC) if (create or self.out_dir.is_dir()) else None
        if out_fd is None:
            yield None
            return
        try:
            fd = _open_state_dir(out_fd, self.out_dir, create)
        finally:
            os.close(out_fd)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def _open_read(self, dir_fd: int | None) -> int | None:
        if dir_fd is None:
            return None
        try:
            return _open_state_file(JOURNAL_NAME, dir_fd, os.O_RDONLY, self.out_dir)
        except FileNotFoundError:
            return None

    def exists(self) -> bool:
        """True when the journal holds anything."""
        with self._state() as dir_fd:
            fd = self._open_read(dir_fd)
            if fd is None:
                return False
            try:
                return os.fstat(fd).st_size > 0
            finally:
                os.close(fd)

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(byte offset, line) of every complete line (a torn trailing line is skipped)."""
        with self._state() as dir_fd:
            fd = self._open_read(dir_fd)
            if fd is None:
                return
            with os.fdopen(fd, "rb") as fh:
                offset = 0
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # torn write from a killed scan
                    yield offset, line
                    offset += len(line)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every complete row, in journal order."""
        for _, line in self.lines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row

    def statuses(self) -> dict[str, str]:
        """path → status of the last row per path."""
        return {k: e.status for k, e in self.entries().items()}

    def entries(self) -> dict[str, JournalEntry]:
        """key → what the last row of that key says (status, input fingerprint)."""
        out: dict[str, JournalEntry] = {}
        for r in self.rows():
            key = r.get("path")
            if isinstance(key, str):
                out[key] = JournalEntry(str(r.get("status", "ok")), r.get(FINGERPRINT_KEY),
                                        r.get("size_bytes"), r.get("mtime"))
        return out

    def last_offsets(self, keys: Iterable[str] | None = None,
                     keep: "RowCache | None" = None) -> list[tuple[str, int]]:
        """(key, byte offset of its last row) sorted by key, from one pass; only ``keys`` when given.

        ``keep``: a :class:`RowCache` that keeps the decoded last rows (up to its limit), so that
        :meth:`rows_at` need not read and decode them a second time.
        """
        wanted = set(keys) if keys is not None else None
        last: dict[str, int] = {}
        for offset, line in self.lines():
            try:
                row = json.loads(line)
                key = row["path"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(key, str) and (wanted is None or key in wanted):
                last[key] = offset
                if keep is not None:
                    keep.put(key, offset, row)
        return sorted(last.items())

    def rows_at(self, order: Sequence[tuple[str, int]], cached: "RowCache | None" = None) -> Iterator[dict[str, Any]]:
        """The rows at the given offsets (from :meth:`last_offsets`), in that order; rows ``cached`` by
        :meth:`last_offsets` come from memory (and leave the cache as they are handed out)."""
        if not order:
            return
        with self._state() as dir_fd:
            fd = self._open_read(dir_fd)
            if fd is None:
                return
            with os.fdopen(fd, "rb") as fh:
                for key, off in order:
                    row = cached.take(key, off) if cached is not None else None
                    if row is not None:
                        yield row
                        continue
                    fh.seek(off)
                    yield json.loads(fh.readline())

    # -- writing

    def open(self) -> None:
        """Open for appending (creating the state folder and the journal), cutting off a torn last line."""
        if self._state_fd is None:
            out_fd = os.open(self.out_dir, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
            try:
                self._own_state_fd = self._state_fd = _open_state_dir(out_fd, self.out_dir, True)
            finally:
                os.close(out_fd)
        self._fd = _open_state_file(JOURNAL_NAME, self._state_fd, os.O_RDWR | os.O_APPEND | os.O_CREAT,
                                    self.out_dir)
        self._truncate_torn_tail()

    def _truncate_torn_tail(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        end, chunk = size, 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - chunk)
            block = os.pread(self._fd, end - start, start)
            at = block.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows and make them durable (one write + fsync per call).

        On failure the journal is cut back to where it was, so it ends with a whole row.
        """
        from .report.writers import row_to_json

        assert self._fd is not None, "journal not open"
        data = "".join(row_to_json(r) + "\n" for r in rows).encode("utf-8")
        if not data:
            return
        before = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._own_state_fd is not None:
            fd, self._own_state_fd, self._state_fd = self._own_state_fd, None, None
            with contextlib.suppress(OSError):
                os.close(fd)


class RowCache:
    """Decoded journal rows kept between :meth:`Journal.last_offsets` and :meth:`Journal.rows_at`.

    Finalising a report decoded every row twice: once to learn its key, once to write it. Up to ``limit``
    keys keep their last row's decoded dict instead (a key's newer row replaces its older one, so a kept
    row is always the one at the key's last offset; keys beyond the limit are read again). Memory stays
    bounded by ``limit`` rows whatever the journal's length.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self._rows: dict[str, tuple[int, Any]] = {}

    def put(self, key: str, offset: int, row: Any) -> None:
        if key in self._rows or len(self._rows) < self.limit:
            self._rows[key] = (offset, row)

    def take(self, key: str, offset: int) -> Any:
        """The kept row of ``key`` if it is the one at ``offset`` (else None); it leaves the cache."""
        kept = self._rows.pop(key, None)
        return kept[1] if kept is not None and kept[0] == offset else None

    def __len__(self) -> int:
        return len(self._rows)


# ------------------------------------------------------------------------------------------ resume keys


@dataclass
class Plan:
    """What a scan into a folder does: the inputs to scan now, and the keys its report holds."""

    todo: list[Any]
    keys: list[str]
    skipped: int = 0
    changed: int = 0  # journaled, but the file changed since: scanned again


def plan_inputs(inputs: Sequence[Any], done: Mapping[str, JournalEntry], *, retry_errors: bool,
                fingerprint: Callable[[Any], str | None],
                legacy_facts: Callable[[Any], Mapping[str, Any]] | None = None) -> Plan:
    """Split ``inputs`` (objects with a ``key``) into those to scan and those already done (rule 4)."""
    todo, changed = [], 0
    for item in inputs:
        entry = done.get(item.key)
        if entry is None or (retry_errors and entry.status == "error"):
            todo.append(item)
            continue
        if entry.fingerprint is not None:
            same = entry.fingerprint == fingerprint(item)
        else:  # a journal from before fingerprints: size and mtime (seconds) as reported
            facts = legacy_facts(item) if legacy_facts is not None else {}
            same = (entry.size_bytes, entry.mtime) == (facts.get("size_bytes"), facts.get("mtime"))
        if not same:
            todo.append(item)
            changed += 1
    return Plan(todo=todo, keys=[i.key for i in inputs], skipped=len(inputs) - len(todo), changed=changed)


# --------------------------------------------------------------------------------------- output folder


def _identity(st: os.stat_result) -> dict[str, int]:
    return {"dev": int(st.st_dev), "ino": int(st.st_ino), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@dataclass
class OutputFolder:
    """The output folder of one scan: open it, lock it, plan, journal, finalise (module docstring).

    Use as a context manager (:meth:`open`/:meth:`close`); the folder is created when missing.
    """

    out: Path
    create: bool = True
    _out_fd: int | None = field(default=None, repr=False)
    _state_fd: int | None = field(default=None, repr=False)
    _lock_fd: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)

    # -- opening and locking

    def open(self) -> "OutputFolder":
        try:
            if self.create:
                self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScanError(f"cannot create the output folder {self.out}: {exc.strerror or exc}") from exc
        try:
            self._out_fd = os.open(self.out, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
            self._state_fd = _open_state_dir(self._out_fd, self.out, self.create)
        except OSError as exc:  # read-only or full disk, no permission: say so, no traceback
            self.close()
            raise ScanError(f"cannot use the output folder {self.out}: {exc.strerror or exc}") from exc
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> "OutputFolder":
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        for name in ("_lock_fd", "_state_fd", "_out_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    os.close(fd)

    @property
    def state_fd(self) -> int:
        assert self._state_fd is not None, "output folder not open"
        return self._state_fd

    def lock(self) -> None:
        """Take the folder's lock for this process (rule 2); released by :meth:`close`."""
        import fcntl

        try:
            fd = _open_state_file(LOCK_NAME, self.state_fd, os.O_RDWR | os.O_CREAT, self.out)
        except OSError as exc:
            raise ScanError(f"cannot use the output folder {self.out}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ScanError(f"another scan ({holder}) is writing to {self.out}; wait for it or use another --out")
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        except OSError as exc:
            raise ScanError(f"cannot use the output folder {self.out}: {exc.strerror or exc}") from exc

    def journal(self) -> Journal:
        return Journal(self.out, state_fd=self.state_fd)

    # -- state files

    def read_scan_meta(self) -> dict[str, Any] | None:
        return _read_state_json(SCAN_NAME, self._state_fd, self.out)

    def write_scan_meta(self, meta: Mapping[str, Any]) -> None:
        atomic_write_text(SCAN_NAME, json.dumps(dict(meta), indent=2, ensure_ascii=False), dir_fd=self.state_fd)

    def _outputs(self) -> dict[str, Any] | None:
        data = _read_state_json(OUTPUTS_NAME, self._state_fd, self.out)
        return data.get("files") if data and isinstance(data.get("files"), dict) else None

    def _save_outputs(self, files: Mapping[str, Any]) -> None:
        atomic_write_text(OUTPUTS_NAME, json.dumps({"files": dict(files)}, indent=2), dir_fd=self.state_fd)

    def _write_output(self, name: str, write: Callable[[Any], Any]) -> None:
        """Replace ``OUT/name`` atomically, recording its identity so that it stays ours (rule 6).

        The new identity is recorded *before* the rename, beside the old one, and alone after it: a scan
        killed in between leaves a file that is recorded either way.
        """
        files = dict(self._outputs() or {})

        def record(st: os.stat_result) -> None:
            known = files.get(name)
            known = [known] if isinstance(known, dict) else list(known or [])
            files[name] = [*known, _identity(st)]
            self._save_outputs(files)

        atomic_write(name, write, dir_fd=self._out_fd, before_rename=record)
        files[name] = [files[name][-1]]
        self._save_outputs(files)

    def _forget_outputs(self, names: Sequence[str]) -> None:
        files = dict(self._outputs() or {})
        if any(files.pop(n, None) is not None for n in names):
            self._save_outputs(files)

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self._out_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def ours(self, name: str) -> bool:
        """Whether ``OUT/name`` is a file this tool wrote and nobody changed since (rule 6)."""
        st = self._lstat(name)
        if st is None or not stat.S_ISREG(st.st_mode):
            return False
        files = self._outputs()
        if files is None:  # a folder from before outputs.json: report files beside our journal are ours
            return self._has_state_files()
        recorded = files.get(name)
        recorded = [recorded] if isinstance(recorded, dict) else recorded or []
        return _identity(st) in recorded

    def _has_state_files(self) -> bool:
        return any(self._state_file_exists(n) for n in (JOURNAL_NAME, SCAN_NAME))

    def _state_file_exists(self, name: str) -> bool:
        try:
            st = os.stat(name, dir_fd=self.state_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return st.st_size > 0

    def report_names(self) -> list[str]:
        """Report files (any format) and the sidecar present in OUT (links included)."""
        from .report.schema import REPORT_FILENAMES
        from .report.writers import sidecar_name

        names = [*REPORT_FILENAMES.values(), sidecar_name("report.parquet")]
        return [n for n in names if self._lstat(n) is not None]

    # -- starting a scan

    def prepare(self, meta: Mapping[str, Any], *, resume: bool, overwrite: bool) -> dict[str, JournalEntry]:
        """Apply the resume/overwrite rules; returns what the journal holds (empty when starting over)."""
        from .report.schema import REPORT_FILENAMES

        journal = self.journal()
        names = self.report_names()
        has_previous = journal.exists() or any(n in REPORT_FILENAMES.values() for n in names)
        if has_previous and not (resume or overwrite):
            raise ScanError(f"{self.out} already holds a scan; use --resume to continue it or --overwrite to start over")
        foreign = [n for n in names if not self.ours(n)]
        if foreign:
            raise ScanError(
                f"{self.out / foreign[0]} was not written by exposure-cli (or was changed since); a scan only "
                "replaces files exposure-cli wrote. Move it away, or choose another --out")
        if overwrite and not resume:
            for name in names:
                os.unlink(name, dir_fd=self._out_fd)
            for name in (JOURNAL_NAME, SCAN_NAME, OUTPUTS_NAME):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self.state_fd)
            return {}
        previous = self.read_scan_meta()
        if previous is not None and journal.exists():
            changed = [k for k in COMPARED_META if previous.get(k) != meta.get(k)]
            if changed:
                raise ScanError(
                    f"cannot resume: {', '.join(changed)} differ from the scan in {self.out} "
                    "(use the same options, or --overwrite to start over)"
                )
        return journal.entries()

    # -- finalisation

    def finalize(self, fmt: Any, columns: Sequence[str], metadata: Mapping[str, Any],
                 keys: Iterable[str] | None = None) -> Path:
        """Build the report from the journal, atomically (rule 5); only ``keys`` when given."""
        from .report.schema import REPORT_FILENAMES, ReportFormat
        from .report.writers import ROW_GROUP, sidecar_name, write_rows

        fmt = ReportFormat(fmt)
        name = REPORT_FILENAMES[fmt]
        # A report in another format from an earlier run of this scan (--resume --format …) is stale.
        # Whether it is ours is decided before outputs.json changes (a folder from before that file).
        stale = [n for n in REPORT_FILENAMES.values() if n != name and self.ours(n)]
        journal = self.journal()
        # decoded rows of up to a quarter of a row group kept from the first pass (RowCache; ~18 MB)
        cache = RowCache(ROW_GROUP // 4)
        order = journal.last_offsets(keys, keep=cache)
        self._write_output(name, lambda fh: write_rows(journal.rows_at(order, cache), fh, fmt, columns, metadata))
        meta = (json.dumps(dict(metadata), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        self._write_output(sidecar_name(name), lambda fh: fh.write(meta))
        for n in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(n, dir_fd=self._out_fd)
        self._forget_outputs(stale)
        return self.out / name


def finalize(out_dir: str | os.PathLike, fmt: Any, columns: Sequence[str], metadata: Mapping[str, Any],
             keys: Iterable[str] | None = None) -> Path:
    """Build ``OUT``'s report from its journal (see :meth:`OutputFolder.finalize`)."""
    with OutputFolder(Path(out_dir)) as folder:
        return folder.finalize(fmt, columns, metadata, keys)


__all__ = ["COMPARED_META", "FINGERPRINT_KEY", "Journal", "JournalEntry", "OutputFolder", "Plan", "RowCache", "STATE_DIR",
           "check_inputs_vs_out", "finalize", "output_path", "plan_inputs"]
