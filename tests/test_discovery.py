import os
from pathlib import Path

import pytest

from exposure_cli.discovery import discover, safe_key


def touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def keys(items):
    return [i.key for i in items]


def test_walk_is_recursive_sorted_and_case_insensitive(tmp_path):
    for rel in ["b/2.JPG", "b/1.jpeg", "a.PNG", "c/d/e.TiFF", "notes.txt", "z.webp", "y.bmp"]:
        touch(tmp_path / rel)
    assert keys(discover([tmp_path])) == ["a.PNG", "b/1.jpeg", "b/2.JPG", "c/d/e.TiFF", "y.bmp", "z.webp"]
    assert keys(discover([tmp_path], recursive=False)) == ["a.PNG", "y.bmp", "z.webp"]


def test_hidden_skipped_unless_asked(tmp_path):
    touch(tmp_path / ".cache" / "a.jpg")
    touch(tmp_path / ".b.jpg")
    touch(tmp_path / "c.jpg")
    assert keys(discover([tmp_path])) == ["c.jpg"]
    assert keys(discover([tmp_path], include_hidden=True)) == [".b.jpg", ".cache/a.jpg", "c.jpg"]


def test_include_exclude_globs(tmp_path):
    for rel in ["raw/a.jpg", "raw/b.png", "edit/a.jpg"]:
        touch(tmp_path / rel)
    assert keys(discover([tmp_path], include=["*.jpg"])) == ["edit/a.jpg", "raw/a.jpg"]
    assert keys(discover([tmp_path], exclude=["raw/*"])) == ["edit/a.jpg"]


def test_output_folder_never_scanned(tmp_path):
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "out" / "overlays" / "a.jpg.jpg")
    assert keys(discover([tmp_path], exclude_dirs=[tmp_path / "out"])) == ["a.jpg"]


def test_symlink_loop_survived_and_outside_links_flagged(tmp_path):
    root = tmp_path / "root"
    touch(root / "a" / "x.jpg")
    os.symlink(root, root / "a" / "loop")
    outside = touch(tmp_path / "elsewhere.jpg")
    os.symlink(outside, root / "link.jpg")
    os.symlink(tmp_path / "missing.jpg", root / "broken.jpg")
    items = {i.key: i.problem for i in discover([root])}
    assert items["a/x.jpg"] is None
    assert items["broken.jpg"] == "broken symlink"
    assert "outside" in items["link.jpg"]
    followed = {i.key: i.problem for i in discover([root], follow_symlinks=True)}
    assert followed["link.jpg"] is None
    assert sum(1 for k in followed if k.endswith("x.jpg")) == 1  # the loop did not repeat the file


def test_multiple_roots_get_prefixes_and_explicit_files_are_taken(tmp_path):
    touch(tmp_path / "one" / "a.jpg")
    touch(tmp_path / "two" / "a.jpg")
    explicit = touch(tmp_path / "odd.dat")
    got = keys(discover([tmp_path / "one", tmp_path / "two", explicit]))
    assert got == ["one/a.jpg", "two/a.jpg", "odd.dat"]


def test_same_file_twice_gives_one_input(tmp_path):
    f = touch(tmp_path / "a.jpg")
    assert len(list(discover([tmp_path, f]))) == 1


def test_missing_explicit_file_is_reported_not_dropped(tmp_path):
    (item,) = discover([tmp_path / "nope.jpg"])
    assert item.problem == "file not found"


@pytest.mark.parametrize("parts,expected", [
    (["../../etc/passwd"], "etc/passwd"),
    (["/abs/x.jpg"], "abs/x.jpg"),
    (["a/./b", "c.jpg"], "a/b/c.jpg"),
    ([".."], "_"),
])
def test_safe_key_cannot_escape(parts, expected):
    assert safe_key(parts) == expected
