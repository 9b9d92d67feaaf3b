"""The output folder's state (exposure_cli.outdir) and the one atomic-write helper (exposure_cli.atomic).

The durability tests watch the operating system's calls through recording wrappers installed on the
``os`` module (the real calls still run): they check the helper's observable contract, not its code.
"""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from conftest import photo_like, write_image
from exposure_cli import atomic
from exposure_cli.outdir import Journal, OutputFolder
from exposure_cli.pipeline import ScanError, scan
from exposure_cli.report.writers import read_report

PACKAGE = Path(__file__).resolve().parents[1] / "exposure_cli"


# ---------------------------------------------------------------------------------------- atomic writes


class Recorder:
    """Wraps os.fsync / os.replace / os.rename, recording what each call touched, in order."""

    def __init__(self, monkeypatch) -> None:
        self.events: list[tuple] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            st = os.fstat(fd)
            self.events.append(("fsync", st.st_ino, stat.S_ISDIR(st.st_mode)))
            return real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            dir_fd = kwargs.get("src_dir_fd")
            st = os.stat(src, dir_fd=dir_fd, follow_symlinks=False)
            self.events.append(("replace", st.st_ino, os.fspath(dst)))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)


def test_atomic_write_fsyncs_the_data_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target = tmp_path / "report.csv"
    target.write_text("old")
    rec = Recorder(monkeypatch)
    atomic.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    ino = target.stat().st_ino
    renames = [i for i, e in enumerate(rec.events) if e[0] == "replace" and e[1] == ino]
    file_syncs = [i for i, e in enumerate(rec.events) if e[0] == "fsync" and e[1] == ino]
    dir_syncs = [i for i, e in enumerate(rec.events)
                 if e[0] == "fsync" and e[2] and e[1] == tmp_path.stat().st_ino]
    assert len(renames) == 1, rec.events
    assert file_syncs and file_syncs[0] < renames[0], f"the data must be fsynced before the rename: {rec.events}"
    assert dir_syncs and dir_syncs[-1] > renames[0], f"the folder must be fsynced after the rename: {rec.events}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_every_file_the_scan_writes_whole_goes_through_the_helper(tmp_path, monkeypatch):
    """Report, sidecar, scan.json, outputs.json, overlays and maps: each renamed into place after an fsync."""
    write_image(tmp_path / "in" / "a.jpg", photo_like(60, 80))
    rec = Recorder(monkeypatch)
    scan([tmp_path / "in"], out=tmp_path / "out", model="baseline", regions=False, overlays=True, maps=True)
    out = tmp_path / "out"
    written = {"report.parquet": out / "report.parquet", "report.meta.json": out / "report.meta.json",
               "scan.json": out / ".exposure" / "scan.json", "outputs.json": out / ".exposure" / "outputs.json",
               "overlay": out / "overlays" / "a.overlay.jpg", "map": out / "maps" / "a.jpg.npy"}
    for what, path in written.items():
        ino = path.stat().st_ino
        renames = [i for i, e in enumerate(rec.events) if e[0] == "replace" and e[1] == ino]
        syncs = [i for i, e in enumerate(rec.events) if e[0] == "fsync" and e[1] == ino]
        assert renames and syncs and syncs[0] < renames[-1], what


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "page.html"
    target.write_text("old page")

    def half_then_fail(fh):
        fh.write(b"half a page")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic.atomic_write(target, half_then_fail)
    assert target.read_text() == "old page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


def test_atomic_write_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.csv").symlink_to(victim)
    atomic.atomic_write_text(tmp_path / "out" / "report.csv", "report")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "out" / "report.csv").is_symlink()


def test_a_target_name_at_the_length_limit_can_still_be_written(tmp_path):
    name = "é" * 120 + ".jpg"  # 244 bytes: fits, but ".<name>.tmp" with a random part would not
    atomic.atomic_write_bytes(tmp_path / name, b"x")
    assert (tmp_path / name).read_bytes() == b"x"


def test_the_package_replaces_files_only_through_the_helper():
    """No module but exposure_cli/atomic.py calls os.replace / os.rename (the pattern lives in one place)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "atomic.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "os":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


# -------------------------------------------------------------------------------------------- journal


def test_journal_rows_are_fsynced_before_append_returns(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    journal.open()
    rec = Recorder(monkeypatch)
    journal.append([{"path": "a.jpg", "status": "ok"}])
    ino = (tmp_path / ".exposure" / "journal.jsonl").stat().st_ino
    assert ("fsync", ino, False) in rec.events
    journal.close()


def test_a_failed_append_is_cut_back_to_the_last_whole_row(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    journal.open()
    journal.append([{"path": "a.jpg", "status": "ok"}])
    real_write = os.write
    calls = []

    def short_then_enospc(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))  # a partial write, as on a filling disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    with pytest.raises(OSError):
        journal.append([{"path": "b.jpg", "status": "ok"}])
    monkeypatch.setattr(os, "write", real_write)
    journal.append([{"path": "c.jpg", "status": "ok"}])  # must not be glued onto a torn row
    journal.close()
    assert [r["path"] for r in Journal(tmp_path).rows()] == ["a.jpg", "c.jpg"]


# ------------------------------------------------------------------------------ links planted in OUT


def _photos(folder: Path, n: int = 3) -> Path:
    for i in range(n):
        write_image(folder / f"{i}.jpg", photo_like(40, 50, seed=i))
    return folder


def _scan(photos, out, **kw):
    return scan([photos], out=out, model="baseline", regions=False, **kw)


def test_a_lock_link_planted_in_the_state_folder_never_truncates_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    out = tmp_path / "out"
    (out / ".exposure").mkdir(parents=True)
    (out / ".exposure" / "lock").symlink_to(victim)
    with pytest.raises(ScanError, match="symbolic link"):
        _scan(_photos(tmp_path / "in"), out)
    assert victim.read_text() == "precious data"


def test_a_journal_link_planted_in_the_state_folder_is_refused_on_resume(tmp_path):
    photos = _photos(tmp_path / "in")
    out = tmp_path / "out"
    _scan(photos, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\nwith a torn last line")
    journal = out / ".exposure" / "journal.jsonl"
    journal.unlink()
    journal.symlink_to(victim)
    with pytest.raises(ScanError, match="symbolic link"):
        _scan(photos, out, resume=True)
    assert victim.read_text() == "someone else's file\nwith a torn last line"


def test_a_dangling_scan_json_link_creates_nothing_outside_out(tmp_path):
    out = tmp_path / "out"
    (out / ".exposure").mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "created.json"
    outside.parent.mkdir()
    (out / ".exposure" / "scan.json").symlink_to(outside)
    with pytest.raises(ScanError, match="symbolic link"):
        _scan(_photos(tmp_path / "in"), out)
    assert not outside.exists()


def test_report_links_planted_in_out_are_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    photos = _photos(tmp_path / "in")
    _scan(photos, out)
    (out / "report.meta.json").unlink()
    (out / "report.meta.json").symlink_to(victim)
    (out / "report.parquet").unlink()
    (out / "report.parquet").symlink_to(victim)
    with pytest.raises(ScanError, match="not written by exposure-cli"):
        _scan(photos, out, resume=True)
    assert victim.read_text() == "precious"


def test_a_state_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / ".exposure").symlink_to(elsewhere)
    with pytest.raises(ScanError, match="not created by exposure-cli"):
        _scan(_photos(tmp_path / "in"), out)
    assert list(elsewhere.iterdir()) == []


def test_a_state_folder_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the folder to another user")
    out = tmp_path / "out"
    (out / ".exposure").mkdir(parents=True)
    os.chown(out / ".exposure", 12345, 12345)
    with pytest.raises(ScanError, match="belongs to user id 12345"):
        _scan(_photos(tmp_path / "in"), out)


def test_a_state_folder_anyone_may_write_to_is_refused(tmp_path):
    out = tmp_path / "out"
    (out / ".exposure").mkdir(parents=True)
    os.chmod(out / ".exposure", 0o777)
    with pytest.raises(ScanError, match="anyone may write"):
        _scan(_photos(tmp_path / "in"), out)


def test_output_folder_itself_may_be_a_link(tmp_path):
    real = tmp_path / "real_out"
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    result = _scan(_photos(tmp_path / "in"), tmp_path / "out")
    assert len(read_report(result.report_path)[0]) == 3
    assert (real / "report.parquet").is_file()


# ------------------------------------------------------------------------------------- structure


def _import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # lazy imports included
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{module}.{a.name}" for a in node.names] + [module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                # a package importing its own sub-modules (lazily, as a registry) is no cycle
                if t and t != name and not t.startswith(name + ".") and t in modules:
                    deps.add(t)
        graph[name] = deps
    return graph


def test_the_package_has_no_import_cycle():
    graph = _import_graph()
    # the pipeline reaches an engine only through exposure_cli.engines' dispatch
    assert "exposure_cli.engines.ray_engine" not in graph["exposure_cli.pipeline"]
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle.extend(stack[stack.index(dep):] + [node, dep] if dep in stack else [node, dep])
                return True
            if dep not in state and visit(dep, stack + [node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if node not in state and visit(node, []):
            break
    assert cycle == [], " → ".join(cycle)


def test_state_files_are_those_the_contract_names(tmp_path):
    out = tmp_path / "out"
    _scan(_photos(tmp_path / "in"), out)
    assert sorted(p.name for p in (out / ".exposure").iterdir()) == ["journal.jsonl", "lock", "outputs.json",
                                                                   "scan.json"]
    recorded = json.loads((out / ".exposure" / "outputs.json").read_text())["files"]
    assert sorted(recorded) == ["report.meta.json", "report.parquet"]
    with OutputFolder(out) as folder:
        assert folder.ours("report.parquet")


@pytest.mark.parametrize("after_rename", [False, True])
def test_a_scan_killed_while_its_report_is_renamed_can_still_resume(tmp_path, monkeypatch, after_rename):
    """The report's new identity is recorded before the rename and kept after it: whichever side of the
    rename a kill lands, the report is still the tool's own and --resume does not refuse it."""
    photos = _photos(tmp_path / "in")
    out = tmp_path / "out"
    _scan(photos, out)
    write_image(photos / "new.jpg", photo_like(40, 50, seed=9))
    real_replace = os.replace

    def killed(src, dst, *args, **kwargs):
        if os.fspath(dst) == "report.parquet":
            if after_rename:
                real_replace(src, dst, *args, **kwargs)
            raise SystemExit("killed")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(SystemExit):
        _scan(photos, out, resume=True)
    monkeypatch.setattr(os, "replace", real_replace)
    result = _scan(photos, out, resume=True)
    assert len(read_report(result.report_path)[0]) == 4


def test_a_folder_from_before_outputs_json_resumes_in_another_format(tmp_path):
    """Report files beside a journal and no outputs.json (written by an older version) are the tool's own."""
    photos = _photos(tmp_path / "in")
    out = tmp_path / "out"
    _scan(photos, out, format="csv")
    (out / ".exposure" / "outputs.json").unlink()
    result = _scan(photos, out, resume=True)  # Parquet now
    assert not (out / "report.csv").exists()
    assert len(read_report(result.report_path)[0]) == 3
    _scan(photos, out, resume=True)  # and it stays resumable
