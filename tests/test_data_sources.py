"""npm sources: tarballs fetched once and unpacked safely; HDR maps read out of JavaScript data-URL modules."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

import exposure_cli.data.sources as sources
from exposure_cli.data.corpus import photo_id
from exposure_cli.data.sources import SOURCES, SourceError, fetch_npm


def _module(payload: bytes) -> str:
    return "export default 'data:application/exr;base64," + base64.b64encode(payload).decode() + "'\n"


def _tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)


def _no_network(*args, **kwargs):
    raise AssertionError(f"npm was run although the tarball is cached: {args}")


def test_pmndrs_source_yields_the_exact_bytes_of_each_hdr_module(tmp_path) -> None:
    payloads = {"night": b"v/1\x01" + bytes(range(256)) * 3, "lab": b"v/1\x01second"}
    for name, data in payloads.items():
        (tmp_path / "package" / "hdri").mkdir(parents=True, exist_ok=True)
        (tmp_path / "package" / "hdri" / f"{name}.exr.js").write_text(_module(data))
    (tmp_path / "package" / "hdri" / "night.exr.d.ts").write_text("declare const x: string")
    cands = SOURCES.get("pmndrs-hdr").enumerate(tmp_path)
    assert [c.path for c in cands] == ["package/hdri/lab.exr.js", "package/hdri/night.exr.js"]
    assert all(c.kind == "hdr" and c.licence == "CC0" for c in cands)
    assert cands[1].read() == payloads["night"] and cands[0].read() == payloads["lab"]
    assert photo_id("pmndrs-hdr", cands[1].path) == "pmndrs-hdr__night"


def test_a_module_without_a_data_url_is_a_clear_source_error(tmp_path) -> None:
    (tmp_path / "package" / "hdri").mkdir(parents=True)
    (tmp_path / "package" / "hdri" / "x.exr.js").write_text("export default './x.exr'\n")
    (cand,) = SOURCES.get("pmndrs-hdr").enumerate(tmp_path)
    with pytest.raises(SourceError, match="no base64 data URL"):
        cand.read()


def test_fetch_npm_reuses_the_pinned_cached_tarball(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _tarball(cache / "pmndrs-assets-1.7.0.tgz", {"package/hdri/a.exr.js": _module(b"abc").encode()})
    monkeypatch.setattr(subprocess, "run", _no_network)
    root, version = fetch_npm("@pmndrs/assets", "1.7.0", cache)
    assert version == "1.7.0"
    assert (root / "package/hdri/a.exr.js").read_text() == _module(b"abc")
    # a second call neither fetches nor unpacks again
    (root / "package/hdri/a.exr.js").write_text("changed")
    assert fetch_npm("@pmndrs/assets", "1.7.0", cache)[0] == root
    assert (root / "package/hdri/a.exr.js").read_text() == "changed"


def test_fetch_npm_refuses_a_tarball_that_links_outside_its_folder(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _tarball(cache / "evil-2.0.0.tgz", {"package/ok.txt": b"ok"}, links={"package/escape": "../../../../etc/passwd"})
    monkeypatch.setattr(subprocess, "run", _no_network)
    with pytest.raises(SourceError, match="not a safe"):
        fetch_npm("evil", "2.0.0", cache)
    assert not (tmp_path / "etc").exists()


def test_fetch_npm_reports_a_failed_download(tmp_path, monkeypatch) -> None:
    def failing(*args, **kwargs):
        return subprocess.CompletedProcess(args[0], 1, "", "npm error 404 Not Found - GET https://registry/x")

    monkeypatch.setattr(sources.subprocess, "run", failing)
    with pytest.raises(SourceError, match="404"):
        fetch_npm("no-such-package", "1.0.0", tmp_path / "cache")
