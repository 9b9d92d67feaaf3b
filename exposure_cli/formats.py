"""Which file extensions are photos, and which decoder each needs (shared by discovery and decoding)."""

from __future__ import annotations

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

__all__ = ["CORE_EXTENSIONS", "HEIF_EXTENSIONS", "IMAGE_EXTENSIONS", "RAW_EXTENSIONS"]
