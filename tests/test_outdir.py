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
from exposure_cli.outdir import Journal, JournalEntry, OutputFolder, plan_inputs, row_fingerprint
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


# ------------------------------------------------------------------------- what --resume skips (rule 4)


class Item:
    def __init__(self, key: str, fp: str | None = None, size=None, mtime=None) -> None:
        self.key, self.fp, self.size, self.mtime = key, fp, size, mtime


def _fp(item: Item) -> str | None:
    return item.fp


def _facts(item: Item) -> dict:
    return {"size_bytes": item.size, "mtime": item.mtime}


def test_plan_skips_only_journaled_keys_whose_file_is_unchanged():
    inputs = [Item("new", "1"), Item("same", "2"), Item("changed", "3"), Item("failed", "4"), Item("failed2", "9")]
    done = {"same": JournalEntry("ok", "2"), "changed": JournalEntry("ok", "old"),
            "failed": JournalEntry("error", "4"), "failed2": JournalEntry("error", "other"),
            "gone": JournalEntry("ok", "5")}
    plan = plan_inputs(inputs, done, retry_errors=False, fingerprint=_fp)
    assert [i.key for i in plan.todo] == ["new", "changed", "failed2"]
    assert plan.keys == ["new", "same", "changed", "failed", "failed2"]  # input order, "gone" is no input
    assert (plan.skipped, plan.changed) == (2, 2)
    retry = plan_inputs(inputs, done, retry_errors=True, fingerprint=_fp)
    assert [i.key for i in retry.todo] == ["new", "changed", "failed", "failed2"]
    assert (retry.skipped, retry.changed) == (1, 1)  # a retried error is not a changed file


def test_plan_with_nothing_journaled_scans_everything_and_asks_no_fingerprint():
    asked = []
    plan = plan_inputs([Item("a", "1"), Item("b", "2")], {}, retry_errors=True,
                       fingerprint=lambda item: asked.append(item) or item.fp)
    assert [i.key for i in plan.todo] == ["a", "b"] and (plan.skipped, plan.changed) == (0, 0)
    assert asked == []


def test_plan_compares_the_fingerprint_of_the_item_itself():
    seen = []
    item = Item("a", "1")
    plan_inputs([item], {"a": JournalEntry("ok", "1")}, retry_errors=False,
                fingerprint=lambda i: seen.append(i) or i.fp)
    assert seen == [item]


def test_plan_falls_back_to_size_and_mtime_for_journals_from_before_fingerprints():
    done = {"same": JournalEntry("ok", None, 10, 5), "bigger": JournalEntry("ok", None, 10, 5),
            "touched": JournalEntry("ok", None, 10, 5), "bare": JournalEntry("ok", None)}
    inputs = [Item("same", "x", 10, 5), Item("bigger", "x", 11, 5), Item("touched", "x", 10, 6),
              Item("bare", "x", None, None)]
    plan = plan_inputs(inputs, done, retry_errors=False, fingerprint=_fp, legacy_facts=_facts)
    assert [i.key for i in plan.todo] == ["bigger", "touched"]
    assert (plan.skipped, plan.changed) == (2, 2)
    # without a way to read the facts, only an entry that recorded none matches
    plan = plan_inputs(inputs, done, retry_errors=False, fingerprint=_fp)
    assert [i.key for i in plan.todo] == ["same", "bigger", "touched"]


def _journal_with(tmp_path, lines: list[bytes]) -> Journal:
    state = tmp_path / ".exposure"
    state.mkdir(mode=0o700, exist_ok=True)
    (state / "journal.jsonl").write_bytes(b"".join(lines))
    return Journal(tmp_path)


def test_journal_entries_keep_the_last_row_of_each_key(tmp_path):
    journal = _journal_with(tmp_path, [
        b'{"path": "a.jpg", "status": "error", "_fp": "1"}\n',
        b'{"path": "b.jpg", "_fp": "2", "size_bytes": 7, "mtime": 3}\n',
        b'not json\n',
        b'["a list"]\n',
        b'{"path": 5, "status": "ok"}\n',
        b'{"status": "ok"}\n',
        b'{"path": "a.jpg", "status": "ok", "_fp": "1b"}\n',
        b'{"path": "c.jpg", "status": 3}\n',
        b'{"path": "b.jpg", "status": "error"',  # torn tail
    ])
    assert journal.entries() == {
        "a.jpg": JournalEntry("ok", "1b"),
        "b.jpg": JournalEntry("ok", "2", 7, 3),
        "c.jpg": JournalEntry("3", None),
    }
    assert journal.statuses() == {"a.jpg": "ok", "b.jpg": "ok", "c.jpg": "3"}
    assert row_fingerprint({"_fp": "1b", "path": "a.jpg"}) == "1b" and row_fingerprint({}) is None


def test_journal_last_offsets_point_at_each_keys_last_row_sorted_by_key(tmp_path):
    lines = [b'{"path": "b.jpg", "n": 1}\n', b'{"path": "a.jpg", "n": 2}\n', b'oops\n', b'[1]\n', b'"text"\n',
             b'{"nopath": 1}\n', b'{"path": 7}\n', b'{"path": "b.jpg", "n": 3}\n', b'{"path": "c.jpg", "n": 4}']
    journal = _journal_with(tmp_path, lines)
    starts = [sum(len(x) for x in lines[:i]) for i in range(len(lines))]
    assert journal.last_offsets() == [("a.jpg", starts[1]), ("b.jpg", starts[7])]  # c.jpg is torn
    assert journal.last_offsets(["b.jpg", "zzz"]) == [("b.jpg", starts[7])]
    assert journal.last_offsets([]) == []
    assert journal.last_offsets(iter(["a.jpg"])) == [("a.jpg", starts[1])]
    assert [r["n"] for r in journal.rows_at(journal.last_offsets())] == [2, 3]


def test_an_empty_or_missing_journal_has_no_entries(tmp_path):
    assert Journal(tmp_path).entries() == {} and Journal(tmp_path).last_offsets() == []
    assert not Journal(tmp_path).exists()
    journal = _journal_with(tmp_path, [])
    assert journal.entries() == {} and not journal.exists()


META = {"analyzer": "baseline", "thresholds": {"over": 0.1}, "rule_sets": ["default"], "regions": True,
        "format": "parquet", "started": "now"}


def _folder_with_journal(out: Path, meta=META, rows=({"path": "a.jpg", "status": "ok", "_fp": "1"},)) -> None:
    with OutputFolder(out) as folder:
        folder.lock()
        assert folder.prepare(meta, resume=False, overwrite=False) == {}
        folder.write_scan_meta(meta)
        journal = folder.journal()
        journal.open()
        journal.append(list(rows))
        journal.close()


def test_prepare_refuses_a_used_folder_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "out"
    _folder_with_journal(out)
    with OutputFolder(out) as folder:
        with pytest.raises(ScanError, match=r"already holds a scan; use --resume .* or --overwrite"):
            folder.prepare(META, resume=False, overwrite=False)
        assert folder.prepare(META, resume=True, overwrite=False) == {"a.jpg": JournalEntry("ok", "1")}
        # --resume wins over --overwrite: nothing is deleted
        assert folder.prepare(META, resume=True, overwrite=True) == {"a.jpg": JournalEntry("ok", "1")}
    assert (out / ".exposure" / "journal.jsonl").stat().st_size > 0


def test_prepare_overwrite_clears_the_state_and_our_reports(tmp_path):
    out = tmp_path / "out"
    _folder_with_journal(out)
    with OutputFolder(out) as folder:
        folder.finalize("csv", ["path", "status"], {"thresholds": {}})
    assert (out / "report.csv").is_file() and (out / "report.meta.json").is_file()
    (out / "notes.txt").write_text("mine")
    with OutputFolder(out) as folder:
        assert folder.prepare(META, resume=False, overwrite=True) == {}
    assert sorted(p.name for p in out.iterdir()) == [".exposure", "notes.txt"]
    assert sorted(p.name for p in (out / ".exposure").iterdir()) == ["lock"]
    with OutputFolder(out) as folder:  # and the folder counts as fresh now
        assert folder.prepare(META, resume=False, overwrite=False) == {}


def test_a_report_alone_makes_a_folder_used(tmp_path):
    out = tmp_path / "out"
    _folder_with_journal(out)
    with OutputFolder(out) as folder:
        folder.finalize("jsonl", ["path", "status"], {})
    (out / ".exposure" / "journal.jsonl").write_bytes(b"")
    with OutputFolder(out) as folder:
        with pytest.raises(ScanError, match="already holds a scan"):
            folder.prepare(META, resume=False, overwrite=False)
        assert folder.prepare(META, resume=True, overwrite=False) == {}


def test_prepare_refuses_a_report_the_tool_did_not_write(tmp_path):
    out = tmp_path / "out"
    _folder_with_journal(out)
    with OutputFolder(out) as folder:
        folder.finalize("csv", ["path", "status"], {})  # outputs.json now records what the tool wrote
    (out / "report.csv").write_text("path\nforeign.jpg\n")  # changed since
    with OutputFolder(out) as folder:
        for resume, overwrite in ((True, False), (False, True)):
            with pytest.raises(ScanError) as info:
                folder.prepare(META, resume=resume, overwrite=overwrite)
            assert str(info.value) == (
                f"{out / 'report.csv'} was not written by exposure-cli (or was changed since); a scan only "
                "replaces files exposure-cli wrote. Move it away, or choose another --out")
    assert (out / "report.csv").read_text() == "path\nforeign.jpg\n"


def test_a_stray_sidecar_alone_is_foreign_not_a_previous_scan(tmp_path):
    """Only report files make a folder "used"; a sidecar the tool did not write is refused as foreign."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.meta.json").write_text("{}")
    with OutputFolder(out) as folder:
        with pytest.raises(ScanError, match=r"report\.meta\.json was not written by exposure-cli"):
            folder.prepare(META, resume=False, overwrite=False)


@pytest.mark.parametrize("key", ["analyzer", "thresholds", "rule_sets", "regions"])
def test_resume_refuses_other_options_that_change_rows(tmp_path, key):
    out = tmp_path / "out"
    _folder_with_journal(out)
    other = {**META, key: "something else"}
    with OutputFolder(out) as folder:
        with pytest.raises(ScanError, match=rf"cannot resume: {key} differ"):
            folder.prepare(other, resume=True, overwrite=False)
        # other keys may differ (format, start time); --overwrite starts over with the new options
        assert folder.prepare({**META, "format": "csv", "started": "later"}, resume=True, overwrite=False)
        assert folder.prepare(other, resume=False, overwrite=True) == {}


def test_resume_names_every_option_that_differs_in_order(tmp_path):
    out = tmp_path / "out"
    _folder_with_journal(out)
    with OutputFolder(out) as folder:
        with pytest.raises(ScanError) as info:
            folder.prepare({**META, "regions": False, "analyzer": "eat"}, resume=True, overwrite=False)
    assert str(info.value) == (f"cannot resume: analyzer, regions differ from the scan in {out} "
                               "(use the same options, or --overwrite to start over)")


def test_resume_with_an_empty_journal_does_not_compare_options(tmp_path):
    out = tmp_path / "out"
    _folder_with_journal(out, rows=())
    with OutputFolder(out) as folder:
        assert folder.prepare({**META, "analyzer": "eat"}, resume=True, overwrite=False) == {}


def test_rows_kept_from_the_first_pass_are_the_rows_at_the_last_offsets(tmp_path):
    """Finalising decodes a journal row once (issue 18): last_offsets keeps up to a limit of decoded rows,
    always each key's last valid one, and rows_at hands them out (reading the others again)."""
    from exposure_cli.outdir import RowCache

    lines = [b'{"path": "b.jpg", "n": 1}\n', b'{"path": "a.jpg", "n": 2}\n', b'{"path": "a.jpg", "n": 3\n',
             b'{"path": "c.jpg", "n": 4}\n', b'{"path": "b.jpg", "n": 5}\n', b'{"path": "d.jpg", "n": 6}\n']
    journal = _journal_with(tmp_path, lines)
    plain = journal.last_offsets()
    for limit in (0, 1, 2, 10):
        cache = RowCache(limit)
        order = journal.last_offsets(keep=cache)
        assert order == plain
        assert len(cache) == min(limit, 4)
        assert [r["n"] for r in journal.rows_at(order, cache)] == [2, 5, 4, 6]
        assert len(cache) == 0  # every kept row was handed out once
    cache = RowCache(1)
    journal.last_offsets(keep=cache)  # keeps b.jpg (first key seen), replaced by its later row
    assert cache.take("b.jpg", 0) is None  # not the row at that offset
    cache = RowCache(1)
    order = dict(journal.last_offsets(keep=cache))
    assert cache.take("b.jpg", order["b.jpg"]) == {"path": "b.jpg", "n": 5}
    assert [r["n"] for r in journal.rows_at(sorted(order.items()), RowCache(0))] == [2, 5, 4, 6]
