"""A small reader for Qt binary resource bundles (``.rcc``), enough to list and extract their files.

Format (Qt's ``rcc`` binary output, big-endian throughout)::

    header   "qres" | version u32 | tree offset u32 | data offset u32 | names offset u32 | [flags u32, v3+]
    tree     one node per entry, 14 bytes (+ 8 bytes modification time from version 2 on):
               name offset u32 | flags u16 | directory: child count u32, first child index u32
                                           | file:      territory u16, language u16, data offset u32
    names    length u16 | hash u32 | UTF-16BE characters
    data     size u32 | payload  (zlib-compressed payloads start with their uncompressed size u32)

Node flags: 0x1 zlib-compressed, 0x2 directory, 0x4 zstd-compressed. The root is node 0.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MAGIC = b"qres"
FLAG_COMPRESSED = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04


class RccError(ValueError):
    """The bytes are not a readable Qt resource bundle."""


@dataclass(frozen=True)
class RccEntry:
    """A file inside a bundle."""

    path: str
    flags: int
    data_offset: int

    @property
    def compression(self) -> str:
        if self.flags & FLAG_ZSTD:
            return "zstd"
        if self.flags & FLAG_COMPRESSED:
            return "zlib"
        return "none"


class RccBundle:
    """A parsed ``.rcc`` file: ``entries()`` lists files, ``read(entry)`` returns their bytes."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 20 or data[:4] != MAGIC:
            raise RccError("not a Qt resource bundle (missing 'qres' magic)")
        self.data = data
        self.version, self.tree_offset, self.data_offset, self.names_offset = struct.unpack_from(">IIII", data, 4)
        if self.version not in (1, 2, 3):
            raise RccError(f"unsupported rcc format version {self.version}")
        self.node_size = 14 if self.version == 1 else 22

    @classmethod
    def open(cls, path: str | Path) -> "RccBundle":
        return cls(Path(path).read_bytes())

    def _name(self, offset: int) -> str:
        base = self.names_offset + offset
        (length,) = struct.unpack_from(">H", self.data, base)
        start = base + 6  # length u16 + hash u32
        return self.data[start : start + 2 * length].decode("utf-16-be")

    def _node(self, index: int) -> tuple[int, int, int, int]:
        off = self.tree_offset + index * self.node_size
        if off + 14 > len(self.data):
            raise RccError(f"tree node {index} beyond end of file")
        name_off, flags = struct.unpack_from(">IH", self.data, off)
        a, b = struct.unpack_from(">II", self.data, off + 6) if flags & FLAG_DIRECTORY else (0, 0)
        if not flags & FLAG_DIRECTORY:
            (data_off,) = struct.unpack_from(">I", self.data, off + 10)
            return name_off, flags, 0, data_off
        return name_off, flags, a, b

    def entries(self) -> Iterator[RccEntry]:
        """Every file, depth first, with its path inside the bundle (no leading slash)."""
        stack: list[tuple[int, str, int]] = [(0, "", 0)]
        while stack:
            index, prefix, depth = stack.pop()
            if depth > 64:
                raise RccError("resource tree too deep (corrupt file?)")
            name_off, flags, count, first = self._node(index)
            name = "" if index == 0 else self._name(name_off)
            path = f"{prefix}/{name}" if prefix else name
            if flags & FLAG_DIRECTORY:
                for child in reversed(range(first, first + count)):
                    stack.append((child, path, depth + 1))
            else:
                yield RccEntry(path, flags, first)

    def read(self, entry: RccEntry) -> bytes:
        """The (decompressed) bytes of a file."""
        base = self.data_offset + entry.data_offset
        (size,) = struct.unpack_from(">I", self.data, base)
        payload = self.data[base + 4 : base + 4 + size]
        if entry.flags & FLAG_ZSTD:
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError as exc:
                raise RccError(f"{entry.path}: zstd-compressed; pip install zstandard to read it") from exc
            return zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30)
        if entry.flags & FLAG_COMPRESSED:
            return zlib.decompress(payload[4:])
        return payload


def write_rcc(files: dict[str, bytes], compress: tuple[str, ...] = ()) -> bytes:
    """Write a minimal version-2 bundle (for tests): ``files`` maps "dir/name" → bytes.

    ``compress`` lists paths to store zlib-compressed (qCompress layout).
    """
    tree: dict = {}
    for path, content in files.items():
        node = tree
        parts = path.strip("/").split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = content

    names = bytearray()
    name_offsets: dict[str, int] = {}

    def name_off(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            enc = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(name), 0) + enc)
        return name_offsets[name]

    payload = bytearray()
    nodes: list[bytes] = []

    # breadth-first numbering: a directory's children are consecutive nodes
    queue: list[tuple[str, object, str]] = [("", tree, "")]
    order: list[tuple[str, object, str]] = []
    while queue:
        item = queue.pop(0)
        order.append(item)
        name, node, path = item
        if isinstance(node, dict):
            for k in sorted(node):
                queue.append((k, node[k], f"{path}/{k}" if path else k))
    index_of = {path: i for i, (_, _, path) in enumerate(order)}
    for name, node, path in order:
        noff = 0 if path == "" else name_off(name)
        if isinstance(node, dict):
            kids = sorted(node)
            first = index_of[f"{path}/{kids[0]}" if path else kids[0]] if kids else 0
            nodes.append(struct.pack(">IHII", noff, FLAG_DIRECTORY, len(kids), first) + b"\0" * 8)
        else:
            content = bytes(node)  # type: ignore[arg-type]
            flags = 0
            if path in compress:
                content = struct.pack(">I", len(content)) + zlib.compress(content)
                flags = FLAG_COMPRESSED
            doff = len(payload)
            payload.extend(struct.pack(">I", len(content)) + content)
            nodes.append(struct.pack(">IHHHI", noff, flags, 0, 0, doff) + b"\0" * 8)
    header_size = 20
    tree_off = header_size
    tree_bytes = b"".join(nodes)
    data_off = tree_off + len(tree_bytes)
    names_off = data_off + len(payload)
    header = MAGIC + struct.pack(">IIII", 2, tree_off, data_off, names_off)
    return header + tree_bytes + bytes(payload) + bytes(names)


__all__ = ["RccBundle", "RccEntry", "RccError", "write_rcc"]
