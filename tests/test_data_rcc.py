"""Our Qt resource-bundle reader on bundles generated in the test."""

from __future__ import annotations

import pytest

from exposure_cli.data.rcc import RccBundle, RccError, write_rcc


def test_lists_and_reads_plain_and_compressed_files() -> None:
    files = {
        "gcompris/src/activities/a/resource/photo.jpg": b"\xff\xd8jpeg bytes" * 10,
        "gcompris/src/activities/a/resource/deep/x.webp": b"RIFF" + bytes(range(256)) * 4,
        "top.txt": "héllo".encode(),
    }
    bundle = RccBundle(write_rcc(files, compress=("gcompris/src/activities/a/resource/deep/x.webp",)))
    entries = {e.path: e for e in bundle.entries()}
    assert set(entries) == set(files)
    assert entries["gcompris/src/activities/a/resource/deep/x.webp"].compression == "zlib"
    for path, content in files.items():
        assert bundle.read(entries[path]) == content


def test_rejects_non_bundles() -> None:
    with pytest.raises(RccError, match="qres"):
        RccBundle(b"not a bundle at all, just bytes")
