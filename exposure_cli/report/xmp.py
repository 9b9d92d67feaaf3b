"""XMP sidecars: each photo's rating, colour label, metrics and exposure correction, for photo managers.

Lightroom, Camera Raw, darktable and digiKam read these properties from a sidecar:

* ``xmp:Rating`` (1–5 stars) and ``xmp:Label`` (a colour name) from the photo's grade under the first
  rule set: the best grade gets 5 stars and the worst 1, spread evenly between; the label is the colour the
  HTML page and the XLSX report give the grade's lowest score (below 50 ``Red``, below 80 ``Yellow``, else
  ``Green``). With the ``default`` grades: A ★5 Green, B ★4 Yellow, C ★3 Yellow, D ★2 Red, F ★1 Red.
* ``crs:Exposure2012`` (Camera Raw's and Lightroom's Exposure slider, in stops) from the report's
  ``ev_correction`` column — stops to add, positive brightens — only when the report has that column and
  the photo's value is finite (clamped to the slider's ±5).
* Our own numbers in the ``exposurecli`` namespace (:data:`NS_EXPOSURE_CLI`): the first rule set's score,
  grade and first reason, the over/under/bad shares, the mean residual, ``ev_correction``, the analyzer.

Sidecar names: ``photo.jpg`` → ``photo.jpg.xmp`` (darktable's and digiKam's convention; Lightroom reads no
sidecars for JPEGs), and RAW files the way Lightroom and Camera Raw look for them: ``IMG_1.CR2`` →
``IMG_1.xmp``. By default they go to ``OUT/xmp/`` mirroring the scanned folders; next to the photos only
when asked. An existing sidecar is merged, never replaced: our properties are set, every other property
is kept, the original is copied to ``<name>.bak`` once, and a sidecar we cannot read with certainty
(not XML, no ``rdf:RDF``, a DTD, or a merge that would lose a property) is left untouched and reported.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..atomic import atomic_write_bytes
from .writers import SCORE_BANDS

NS_X = "adobe:ns:meta/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
#: Our namespace (a URN: it names, it is not fetched).
NS_EXPOSURE_CLI = "urn:exposure-cli:xmp:1.0/"
PREFIXES = {"x": NS_X, "rdf": NS_RDF, "xmp": NS_XMP, "crs": NS_CRS, "exposurecli": NS_EXPOSURE_CLI}

#: Report columns copied into the exposurecli namespace, with their XMP property names.
METRICS = {
    "over_pct": "OverPct",
    "under_pct": "UnderPct",
    "bad_pct": "BadPct",
    "severe_over_pct": "SevereOverPct",
    "severe_under_pct": "SevereUnderPct",
    "mean_residual": "MeanResidual",
    "ev_correction": "EvCorrection",
    "analyzer": "Analyzer",
    "analyzer_version": "AnalyzerVersion",
}
LABELS = ("Red", "Yellow", "Green")  # the page's bands, worst first
EXPOSURE_LIMIT = 5.0  # Camera Raw's Exposure slider range


class SidecarError(Exception):
    """An existing sidecar we will not touch; the message says why."""


@dataclass
class XmpResult:
    written: list[Path] = field(default_factory=list)
    merged: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    skipped: int = 0  # photos without a row to describe (errors)


def sidecar_name(name: str) -> str:
    """``photo.jpg`` → ``photo.jpg.xmp``; RAW ``IMG_1.CR2`` → ``IMG_1.xmp`` (Lightroom's convention)."""
    from ..discovery import RAW_EXTENSIONS

    stem, dot, suffix = name.rpartition(".")
    if dot and stem and "." + suffix.lower() in RAW_EXTENSIONS:
        return stem + ".xmp"
    return name + ".xmp"


def rating_and_label(grade: str | None, score: float | None, grades: Sequence[tuple[float, str]]) -> tuple[int, str] | None:
    """(stars 1–5, colour label) for a grade of a rule set with these (minimum, label) grades, best first."""
    labels = [label for _, label in grades]
    if grade in labels and len(labels) > 1:
        i = labels.index(grade)
        stars = 5 - round(4 * i / (len(labels) - 1))
        floor = grades[i][0]
    elif score is not None and math.isfinite(score):
        stars = 1 + sum(score >= m for m in (40, 60, 75, 90))
        floor = score
    else:
        return None
    band = next(i for i, (limit, _) in enumerate(SCORE_BANDS) if floor < limit)
    return stars, LABELS[band]


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def properties(row: Mapping[str, Any], rule_name: str | None, grades: Sequence[tuple[float, str]],
               has_ev_column: bool) -> dict[tuple[str, str], str]:
    """The (namespace, name) → text properties we write for one report row."""
    props: dict[tuple[str, str], str] = {}
    if rule_name is not None:
        score = _number(row.get(f"score_{rule_name}"))
        grade = row.get(f"grade_{rule_name}")
        grade = grade if isinstance(grade, str) and grade else None
        rated = rating_and_label(grade, score, grades)
        if rated is not None:
            props[(NS_XMP, "Rating")] = str(rated[0])
            props[(NS_XMP, "Label")] = rated[1]
        props[(NS_EXPOSURE_CLI, "RuleSet")] = rule_name
        if score is not None:
            props[(NS_EXPOSURE_CLI, "Score")] = f"{score:.1f}"
        if grade:
            props[(NS_EXPOSURE_CLI, "Grade")] = grade
        reasons = row.get(f"reasons_{rule_name}")
        if isinstance(reasons, str) and reasons:
            props[(NS_EXPOSURE_CLI, "Reason")] = reasons.split("; ")[0]
    for column, name in METRICS.items():
        value = row.get(column)
        number = _number(value) if not isinstance(value, str) else None
        if number is not None:
            props[(NS_EXPOSURE_CLI, name)] = f"{number:.4g}"
        elif isinstance(value, str) and value:
            props[(NS_EXPOSURE_CLI, name)] = value
    if has_ev_column:
        ev = _number(row.get("ev_correction"))
        if ev is not None:
            ev = max(-EXPOSURE_LIMIT, min(EXPOSURE_LIMIT, ev))
            props[(NS_CRS, "Exposure2012")] = f"{ev:+.2f}"
    return props


# ------------------------------------------------------------------------------------------ XML


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _register(namespaces: Mapping[str, str]) -> None:
    for prefix, uri in {**namespaces, **PREFIXES}.items():
        with contextlib.suppress(ValueError):  # ElementTree reserves ns0, ns1, … for itself
            ET.register_namespace(prefix, uri)


def new_packet(props: Mapping[tuple[str, str], str]) -> bytes:
    """A fresh sidecar holding `props`."""
    _register({})
    meta = ET.Element(_q(NS_X, "xmpmeta"), {_q(NS_X, "xmptk"): "exposure-cli"})
    rdf = ET.SubElement(meta, _q(NS_RDF, "RDF"))
    desc = ET.SubElement(rdf, _q(NS_RDF, "Description"), {_q(NS_RDF, "about"): ""})
    for (ns, name), value in props.items():
        desc.set(_q(ns, name), value)
    return _serialise(meta)


def _serialise(root: ET.Element) -> bytes:
    body = ET.tostring(root, encoding="unicode")
    return ("<?xpacket begin=\"\ufeff\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n" + body +
            "\n<?xpacket end=\"w\"?>\n").encode("utf-8")


def _parse(data: bytes) -> tuple[ET.Element, dict[str, str]]:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SidecarError("it declares a DTD or entities")
    namespaces: dict[str, str] = {}
    try:
        for event, item in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            prefix, uri = item
            namespaces.setdefault(prefix, uri)
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
        root = ET.fromstring(data, parser=parser)
    except ET.ParseError as exc:
        raise SidecarError(f"it is not well-formed XML ({exc})") from None
    return root, namespaces


def _descriptions(root: ET.Element) -> list[ET.Element]:
    rdfs = [root] if root.tag == _q(NS_RDF, "RDF") else root.findall(f".//{_q(NS_RDF, 'RDF')}")
    if len(rdfs) != 1:
        raise SidecarError("it has no single rdf:RDF element")
    return rdfs[0].findall(_q(NS_RDF, "Description")) or [ET.SubElement(rdfs[0], _q(NS_RDF, "Description"),
                                                                          {_q(NS_RDF, "about"): ""})]


def _canon(el: ET.Element) -> Any:
    """An element as nested tuples of (namespace-qualified) names and values: prefixes do not matter."""
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(),
            tuple(_canon(c) for c in el if isinstance(c.tag, str)))


def _inventory(descriptions: Iterable[ET.Element]) -> dict[str, Any]:
    """Every property of the descriptions (attributes and child elements), as tag → value."""
    found: dict[str, Any] = {}
    for desc in descriptions:
        for key, value in desc.attrib.items():
            found[key] = value
        for child in desc:
            if isinstance(child.tag, str):
                found[child.tag] = _canon(child)
    return found


def merge_packet(data: bytes, props: Mapping[tuple[str, str], str]) -> bytes:
    """Set `props` in an existing sidecar, keeping every other property; raise SidecarError when unsure."""
    root, namespaces = _parse(data)
    descriptions = _descriptions(root)
    ours = {_q(ns, name) for ns, name in props}
    before = _inventory(descriptions)
    for desc in descriptions:
        for key in [k for k in desc.attrib if k in ours or k.startswith(_q(NS_EXPOSURE_CLI, ""))]:
            del desc.attrib[key]
        for child in [c for c in desc if isinstance(c.tag, str)
                      and (c.tag in ours or c.tag.startswith(_q(NS_EXPOSURE_CLI, "")))]:
            desc.remove(child)
    for (ns, name), value in props.items():
        descriptions[0].set(_q(ns, name), value)
    _register(namespaces)
    out = _serialise(root)
    # Refuse rather than lose anything: every property that is not ours must come back unchanged.
    after = _inventory(_descriptions(_parse(out)[0]))
    lost = [k for k, v in before.items() if k not in ours and not k.startswith(_q(NS_EXPOSURE_CLI, ""))
            and after.get(k) != v]
    if lost:
        raise SidecarError(f"merging would change {', '.join(lost[:3])}")
    return out


def write_sidecar(target: Path, props: Mapping[tuple[str, str], str]) -> str:
    """Write or merge one sidecar, atomically. Returns "written" or "merged"."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        data = merge_packet(target.read_bytes(), props)
        backup = target.with_name(target.name + ".bak")
        if not backup.exists() and not _written_by_us(target):
            shutil.copy2(target, backup)
        how = "merged"
    else:
        data = new_packet(props)
        how = "written"
    atomic_write_bytes(target, data)
    return how


def _written_by_us(path: Path) -> bool:
    try:
        head = path.read_bytes()[:400]
    except OSError:
        return False
    return b'xmptk="exposure-cli"' in head


def write_xmp_sidecars(df: Any, metadata: Mapping[str, Any], *, out_dir: Path | None = None,
                       next_to_photos: bool = False, report_dir: Path | None = None,
                       rule_sets: Sequence[Any] = ()) -> XmpResult:
    """Write a sidecar for every ``ok`` row of a report.

    Args:
        df: The report (a DataFrame).
        metadata: The report's metadata (``roots`` locate the photos; ``rule_sets`` names the first one).
        out_dir: The scan folder: sidecars go to ``out_dir/xmp/`` mirroring the scanned folders.
        next_to_photos: Write beside each photo instead (merging into existing sidecars).
        report_dir: Where relative roots in the metadata are relative to (default: ``out_dir``).
        rule_sets: Loaded rule sets, to rank grades (the first one rates); by name from the report if empty.
    """
    from ..pipeline import ScanError, output_path
    from .html import photo_file

    names = [str(n) for n in metadata.get("rule_sets") or []] or \
        [c[len("score_"):] for c in df.columns if str(c).startswith("score_")]
    first = names[0] if names else None
    grades: Sequence[tuple[float, str]] = ()
    if first is not None:
        loaded = {rs.name: rs for rs in rule_sets}
        if first not in loaded:
            from ..rules import load_rule_sets

            with contextlib.suppress(Exception):  # a rule file that moved: rate from the score instead
                loaded.update({rs.name: rs for rs in load_rule_sets([first])})
        grades = tuple(getattr(loaded.get(first), "grades", ()) or ())
    has_ev = "ev_correction" in df.columns
    base = Path(report_dir or out_dir or ".")
    result = XmpResult()
    used: set[Path] = set()
    for row in df.to_dict("records"):
        key = row.get("path")
        if row.get("status") != "ok" or not isinstance(key, str):
            result.skipped += 1
            continue
        props = properties(row, first, grades, has_ev)
        try:
            if next_to_photos:
                photo = photo_file(key, base, metadata)
                if photo is None:
                    raise SidecarError("the photo is not where the report's roots say")
                target = photo.with_name(sidecar_name(photo.name))
            else:
                assert out_dir is not None, "out_dir or next_to_photos"
                folder, _, name = key.rpartition("/")
                rel = (folder + "/" if folder else "") + sidecar_name(name)
                target = output_path(Path(out_dir), "xmp", rel, "")
            if target in used:  # IMG_1.CR2 and IMG_1.NEF side by side: the second keeps its extension
                target = target.with_name(Path(key).name + ".xmp")
            used.add(target)
            how = write_sidecar(target, props)
        except (SidecarError, ScanError, OSError) as exc:
            result.refused.append((Path(key), str(exc)))
            continue
        (result.merged if how == "merged" else result.written).append(target)
    return result
