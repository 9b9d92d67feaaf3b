"""Where the corpus comes from: Debian, Python and npm packages that ship real photographs and HDR maps.

Each :class:`Source` knows how to obtain its package (``apt-get download`` + ``dpkg-deb -x`` for Debian,
the installed distribution for Python, ``npm pack`` + a safe tar extraction for npm) and how to enumerate
candidate image files inside it. Whether a
candidate is a photograph is decided later (:mod:`.corpus`), by a heuristic plus manual overrides.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..registry import Registry


class SourceError(RuntimeError):
    """A package could not be obtained or read."""


@dataclass(frozen=True)
class Candidate:
    """One file inside a source that might be a photograph.

    Attributes:
        path: Path inside the package (for files inside an ``.rcc`` bundle: ``bundle.rcc!/inner/path``).
        read: Returns the file's bytes.
        licence: Licence of this file (falls back to the source's).
        attribution: Author or origin, where the package says.
        kind: ``photo`` (an sRGB image) or ``hdr`` (a linear radiance map, OpenEXR).
    """

    path: str
    read: Callable[[], bytes] = field(compare=False, repr=False)
    licence: str = ""
    attribution: str = ""
    kind: str = "photo"


@dataclass(frozen=True)
class Source:
    """A package that ships images.

    Attributes:
        name: Source name used in photo ids and the manifest.
        kind: ``deb``, ``python`` or ``npm``.
        package: Debian package, Python distribution or npm package name.
        licence: Default licence of the files.
        enumerate: ``(root) -> candidates`` where root is the extracted package (or the installed package).
    """

    name: str
    kind: str
    package: str
    licence: str
    enumerate: Callable[[Path], list[Candidate]] = field(compare=False, repr=False)
    note: str = ""


SOURCES: Registry[Source] = Registry("corpus source")

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")


def _file_reader(path: Path) -> Callable[[], bytes]:
    return lambda: path.read_bytes()


def _files(root: Path, pattern: str, licence: str = "", attribution: str = "") -> list[Candidate]:
    out = []
    for p in sorted(root.glob(pattern)):
        if p.is_file() and p.suffix.lower() in IMAGE_EXT:
            out.append(Candidate(str(p.relative_to(root)), _file_reader(p), licence, attribution))
    return out


# --------------------------------------------------------------------------------------- fetching


def deb_version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def fetch_deb(package: str, version: str | None, cache: Path) -> tuple[Path, str]:
    """Download (or reuse) ``package`` [= ``version``] into ``cache`` and extract it.

    Returns:
        (extracted root, package version).

    Raises:
        SourceError: apt-get could not download it (with the command to run and the likely fix).
    """
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if version:
        debs = [d for d in debs if deb_version(d) == version]
    if not debs:
        spec = f"{package}={version}" if version else package
        proc = subprocess.run(["apt-get", "download", spec], cwd=cache, capture_output=True, text=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if version:
            debs = [d for d in debs if deb_version(d) == version]
        if proc.returncode != 0 or not debs:
            raise SourceError(
                f"could not download Debian package {spec!r}: {proc.stderr.strip() or proc.stdout.strip()}\n"
                "  (run `apt-get update` first; the manifest pins the version, so a newer Debian release "
                "may need `exposure data build --rescan` to re-record it)"
            )
    deb = debs[-1]
    ver = deb_version(deb)
    root = cache / f"{package}_{ver}".replace(":", "%3a")
    if not (root / ".extracted").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (root / ".extracted").write_text(ver)
    return root, ver


def fetch_npm(package: str, version: str | None, cache: Path) -> tuple[Path, str]:
    """Download (or reuse) the npm tarball of ``package`` [@ ``version``] into ``cache`` and extract it.

    Only ``npm pack`` touches the network (the registry); nothing is installed and no package script runs.
    The tarball is unpacked with :mod:`tarfile`'s ``data`` filter (no links out of the folder, no devices).

    Returns:
        (extracted root, package version).

    Raises:
        SourceError: npm is missing or could not fetch the package.
    """
    import tarfile

    cache.mkdir(parents=True, exist_ok=True)
    stem = package.lstrip("@").replace("/", "-")
    tarballs = sorted(cache.glob(f"{stem}-*.tgz"))
    if version:
        tarballs = [t for t in tarballs if t.name == f"{stem}-{version}.tgz"]
    if not tarballs:
        spec = f"{package}@{version}" if version else package
        try:
            proc = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", str(cache)],
                                  capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise SourceError(f"npm is needed to fetch {spec!r} (apt-get install npm)") from None
        tarballs = sorted(cache.glob(f"{stem}-*.tgz"))
        if version:
            tarballs = [t for t in tarballs if t.name == f"{stem}-{version}.tgz"]
        if proc.returncode != 0 or not tarballs:
            raise SourceError(f"could not fetch npm package {spec!r}: {proc.stderr.strip() or proc.stdout.strip()}")
    tgz = tarballs[-1]
    ver = tgz.name[len(stem) + 1 : -len(".tgz")]
    root = cache / f"npm_{stem}_{ver}"
    if not (root / ".extracted").exists():
        root.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(tgz) as tar:
                tar.extractall(root, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise SourceError(f"{tgz}: not a safe, readable npm tarball ({exc})") from None
        (root / ".extracted").write_text(ver)
    return root, ver


def python_package_root(package: str) -> tuple[Path, str]:
    """Installed root and version of a Python distribution's import package."""
    from importlib import metadata, util

    module = {"scikit-image": "skimage", "scikit-learn": "sklearn"}.get(package, package)
    spec = util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"Python package {package!r} is not installed (pip install {package})")
    return Path(list(spec.submodule_search_locations)[0]), metadata.version(package)


# --------------------------------------------------------------------------------------- sources

#: scikit-image files that are colour photographs of everyday scenes; the rest are listed as rejected.
SKIMAGE_LICENCES = {
    "astronaut.png": ("public domain", "NASA (Eileen Collins)"),
    "chelsea.png": ("CC0", "Stefan van der Walt"),
    "coffee.png": ("CC0", "Rachel Michetti"),
    "rocket.jpg": ("public domain", "SpaceX (Falcon 9 launch)"),
    "motorcycle_left.png": ("CC-BY (Middlebury stereo)", "Middlebury College"),
    "motorcycle_right.png": ("CC-BY (Middlebury stereo)", "Middlebury College"),
    "hubble_deep_field.jpg": ("public domain", "NASA/ESA"),
    "ihc.png": ("public domain", "Department of Pathology, University of Rochester"),
    "retina.jpg": ("CC-BY-4.0", "Häggström, Mikael"),
    "color.png": ("BSD-3-Clause", "scikit-image"),
    "logo.png": ("BSD-3-Clause", "scikit-image"),
    "chessboard_RGB.png": ("BSD-3-Clause", "scikit-image"),
}


def _skimage(root: Path) -> list[Candidate]:
    data = root / "data"
    out = []
    for p in sorted(data.iterdir()):
        if p.suffix.lower() in IMAGE_EXT:
            lic, who = SKIMAGE_LICENCES.get(p.name, ("BSD-3-Clause (scikit-image data)", "scikit-image"))
            out.append(Candidate(f"data/{p.name}", _file_reader(p), lic, who))
    return out


def _sklearn(root: Path) -> list[Candidate]:
    who = {"china.jpg": "danielbuechele (Flickr)", "flower.jpg": "vultilion (Flickr)"}
    return [
        Candidate(f"datasets/images/{p.name}", _file_reader(p), "CC-BY-2.0", who.get(p.name, ""))
        for p in sorted((root / "datasets" / "images").glob("*.jpg"))
    ]


def _opencv_doc(root: Path) -> list[Candidate]:
    return _files(root, "usr/share/doc/opencv-doc/examples/data/*", "OpenCV sample data (BSD/Apache, see copyright)")


_RES = re.compile(r"(\d+)x(\d+)")


def _plasma(root: Path) -> list[Candidate]:
    """One candidate per wallpaper: its largest landscape rendition (all sizes are the same photo)."""
    out = []
    for d in sorted((root / "usr/share/wallpapers").iterdir()):
        imgs = [p for p in (d / "contents/images").glob("*") if _RES.match(p.stem)]
        if not imgs:
            continue

        def area(p: Path) -> tuple[int, int]:
            w, h = map(int, _RES.match(p.stem).groups())  # type: ignore[union-attr]
            return (int(w >= h), w * h)

        best = max(imgs, key=area)
        licence, author = "", ""
        meta = d / "metadata.json"
        if meta.exists():
            plugin = json.loads(meta.read_text()).get("KPlugin", {})
            licence = plugin.get("License", "")
            author = ", ".join(a.get("Name", "") for a in plugin.get("Authors", []))
        elif (d / "metadata.desktop").exists():
            text = (d / "metadata.desktop").read_text()
            m1 = re.search(r"^X-KDE-PluginInfo-License=(.*)$", text, re.M)
            m2 = re.search(r"^X-KDE-PluginInfo-Author=(.*)$", text, re.M)
            licence, author = (m1.group(1) if m1 else ""), (m2.group(1) if m2 else "")
        out.append(Candidate(str(best.relative_to(root)), _file_reader(best), licence, author))
    return out


def debian_licences(root: Path, package: str) -> list[tuple[list[str], str, str]]:
    """Stanzas of a machine-readable debian/copyright: (file patterns, licence, copyright holders)."""
    path = root / "usr/share/doc" / package / "copyright"
    if not path.exists():
        return []
    stanzas = []
    for block in re.split(r"\n\s*\n", path.read_text(errors="replace")):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), fields["License"].split(" ")[0] if fields["License"] else "",
                            fields.get("Copyright", "")))
    return stanzas


def licence_for(stanzas: list[tuple[list[str], str, str]], upstream_path: str) -> tuple[str, str]:
    """(licence, copyright) of the last stanza whose pattern matches (Debian's rule), or ('', '')."""
    import fnmatch

    found = ("", "")
    for patterns, licence, holders in stanzas:
        if any(fnmatch.fnmatchcase(upstream_path, pat) for pat in patterns):
            found = (licence, holders[:120])
    return found


@functools.lru_cache(maxsize=4)
def _rcc_index(bundle_path: Path):
    from .rcc import RccBundle

    bundle = RccBundle.open(bundle_path)
    return bundle, {e.path: e for e in bundle.entries()}


def _rcc_reader(bundle_path: Path, entry_path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        bundle, entries = _rcc_index(bundle_path)
        if entry_path not in entries:
            raise SourceError(f"{entry_path} not in {bundle_path}")
        return bundle.read(entries[entry_path])

    return read


def _gcompris(root: Path) -> list[Candidate]:
    """Raster images inside GCompris's Qt resource bundles (SVG drawings are not photographs)."""
    from .rcc import RccBundle

    stanzas = debian_licences(root, "gcompris-qt-data")
    out = []
    for bundle_path in sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
        bundle = RccBundle.open(bundle_path)
        for e in bundle.entries():
            if Path(e.path).suffix.lower() in IMAGE_EXT:
                upstream = e.path.split("/", 1)[1] if e.path.startswith("gcompris/") else e.path
                lic, who = licence_for(stanzas, upstream)
                out.append(Candidate(f"{bundle_path.relative_to(root)}!/{e.path}", _rcc_reader(bundle_path, e.path),
                                     lic or "GPL-3+ (gcompris-qt-data, see copyright)", who))
    return out


def _image_folder(root: Path, package: str, folder: str, upstream_prefix: str, fallback_licence: str) -> list[Candidate]:
    """Every image file in one folder of an extracted package, with its licence from debian/copyright."""
    stanzas = debian_licences(root, package)
    out = []
    for p in sorted((root / folder).glob("*")):
        if p.suffix.lower() in IMAGE_EXT:
            lic, who = licence_for(stanzas, f"{upstream_prefix}/{p.name}")
            out.append(Candidate(str(p.relative_to(root)), _file_reader(p), lic or fallback_licence, who))
    return out


def _lxqt(root: Path) -> list[Candidate]:
    return _image_folder(root, "lxqt-themes", "usr/share/lxqt/wallpapers", "wallpapers", "LGPL-2.1+ (lxqt-themes)")


def _tuxpaint(root: Path) -> list[Candidate]:
    return _image_folder(root, "tuxpaint-data", "usr/share/tuxpaint/templates", "templates", "GPL-2+ (tuxpaint)")


def _palapeli(root: Path) -> list[Candidate]:
    out = []
    for p in sorted((root / "usr/share/palapeli/collection").glob("*")):
        if p.suffix.lower() not in IMAGE_EXT:
            continue
        licence, author = "", ""
        desktop = p.with_suffix(".desktop")
        if desktop.exists():
            text = desktop.read_text(errors="replace")
            m1 = re.search(r"^X-KDE-PluginInfo-License=(.*)$", text, re.M)
            m2 = re.search(r"^X-KDE-PluginInfo-Author=(.*)$", text, re.M)
            licence, author = (m1.group(1).strip() if m1 else ""), (m2.group(1).strip() if m2 else "")
        out.append(Candidate(str(p.relative_to(root)), _file_reader(p), licence, author))
    return out


def _blender_hdr(root: Path) -> list[Candidate]:
    world = root / "usr/share/blender/datafiles/studiolights/world"
    return [
        Candidate(str(p.relative_to(root)), _file_reader(p), "CC0", "Greg Zaal (HDRI Haven)", kind="hdr")
        for p in sorted(world.glob("*.exr"))
    ]


def _data_url_reader(path: Path) -> Callable[[], bytes]:
    """Bytes of a JavaScript module that exports one base64 ``data:`` URL (how @pmndrs/assets ships files)."""

    def read() -> bytes:
        import base64

        text = path.read_text()
        m = re.search(r"data:[^;,'\"]*;base64,([A-Za-z0-9+/=]+)", text)
        if not m:
            raise SourceError(f"{path}: no base64 data URL inside")
        return base64.b64decode(m.group(1))

    return read


def _pmndrs_hdr(root: Path) -> list[Candidate]:
    """Poly Haven HDRIs (CC0) that @pmndrs/assets ships as 512×256 DWAB EXRs inside ``hdri/*.exr.js``."""
    return [
        Candidate(str(p.relative_to(root)), _data_url_reader(p), "CC0", "Poly Haven (via @pmndrs/assets)", kind="hdr")
        for p in sorted((root / "package" / "hdri").glob("*.exr.js"))
    ]


SOURCES.register("skimage", Source("skimage", "python", "scikit-image", "BSD-3-Clause", _skimage))
SOURCES.register("sklearn", Source("sklearn", "python", "scikit-learn", "CC-BY-2.0", _sklearn))
SOURCES.register("opencv-doc", Source("opencv-doc", "deb", "opencv-doc", "BSD-3-Clause / Apache-2.0", _opencv_doc))
SOURCES.register(
    "plasma-wallpapers",
    Source("plasma-wallpapers", "deb", "plasma-workspace-wallpapers", "LGPL-3.0 / CC-BY-SA-4.0", _plasma),
)
SOURCES.register("gcompris", Source("gcompris", "deb", "gcompris-qt-data", "GPL-3+ / CC-BY-SA", _gcompris))
SOURCES.register("lxqt-themes", Source("lxqt-themes", "deb", "lxqt-themes", "LGPL-2.1+ / CC-BY-SA", _lxqt))
SOURCES.register("tuxpaint", Source("tuxpaint", "deb", "tuxpaint-data", "GPL-2+", _tuxpaint))
SOURCES.register("palapeli", Source("palapeli", "deb", "palapeli-data", "per file (desktop entries)", _palapeli))
SOURCES.register("blender-hdr", Source("blender-hdr", "deb", "blender-data", "CC0", _blender_hdr))
SOURCES.register("pmndrs-hdr", Source("pmndrs-hdr", "npm", "@pmndrs/assets", "CC0", _pmndrs_hdr))


def source_root(source: Source, version: str | None, cache: Path) -> tuple[Path, str]:
    """Obtain a source and return (root to enumerate, version)."""
    if source.kind == "python":
        return python_package_root(source.package)
    if source.kind == "npm":
        return fetch_npm(source.package, version, cache)
    return fetch_deb(source.package, version, cache)


def iter_sources(names: list[str] | None = None) -> Iterator[Source]:
    for name in names or SOURCES.names():
        yield SOURCES.get(name)


__all__ = [
    "Candidate",
    "SOURCES",
    "Source",
    "SourceError",
    "fetch_deb",
    "fetch_npm",
    "iter_sources",
    "python_package_root",
    "source_root",
]
