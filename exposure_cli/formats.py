"""Which file extensions are photos, which decoder each needs, and what a non-file is (shared by
discovery and decoding)."""

from __future__ import annotations

import stat

#: Extensions decoded by OpenCV out of the box.
CORE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".dib", ".gif"}
)
#: Extensions that need the ``heif`` extra.
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
#: Camera RAW extensions that need the ``raw`` extra.
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef",
     ".srw", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".x3f", ".rwl"}
)
IMAGE_EXTENSIONS = CORE_EXTENSIONS | HEIF_EXTENSIONS | RAW_EXTENSIONS



def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for messages: ``a FIFO``, ``a folder``, …"""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


__all__ = ["CORE_EXTENSIONS", "HEIF_EXTENSIONS", "IMAGE_EXTENSIONS", "RAW_EXTENSIONS", "file_kind"]
