"""A self-contained HTML page for a report: scores per rule set, sortable, filterable, worst first.

One file, no network: CSS and JavaScript are inline, the report rows are embedded as JSON in a
``<script type="application/json">`` block, and the table is virtualised (only the rows in view are in the
DOM), so a 10 000-row report opens in well under a second. Every value from the report reaches the page
through ``textContent`` or a checked ``src``; the JSON is escaped so that no file name can close the
script block (``<``, ``>``, ``&``, U+2028 and U+2029 are written as ``\\uXXXX``).

Thumbnails: by default each row links the overlay the scan wrote (``overlay_path``, relative to the
report) or else the original photo, as a relative URL from the page's folder, loaded for the rows in view
(eagerly: the table is virtualised, so only a screenful of rows exists at a time, and a lazily loaded image
was sometimes still missing when a headless browser took its screenshot); keep the page beside the scan
folder. A thumbnail that cannot be loaded says so in its cell. ``embed_thumbnails=True`` inlines small JPEG data URIs
instead (a page that travels alone; about 3-5 KB per photo, so meant for a few thousand photos). Embedded
bytes leave with the page, so only files inside the scan folder are read for them — the overlays (scan
with ``--overlays``), never a path from the report that is absolute, uses ``..`` or leads out through a
link. An ``overlay_path`` outside the scan folder is not linked either.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from ..atomic import atomic_write_text

#: Report columns shown (when present) besides rule-set columns, in order.
METRIC_COLUMNS = (
    "over_pct",
    "under_pct",
    "bad_pct",
    "severe_bad_pct",
    "mean_residual",
    "ev_correction",
    "face_ev_correction",
    "face_bad_pct",
    "subject_bad_pct",
    "background_bad_pct",
    "sky_bad_pct",
)
THUMB_SIDE = 96


def safe_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element, whatever strings it holds."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 3)
    if hasattr(value, "item") and not isinstance(value, (list, tuple, str, bytes)):
        try:
            return _clean(value.item())
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (int, str, bool)):
        return value
    return str(value)


def _relative_url(target: Path, page_dir: Path) -> str:
    rel = os.path.relpath(target, page_dir)
    return "/".join(quote(part) for part in Path(rel).as_posix().split("/"))


def photo_file(key: str, report_dir: Path, metadata: Mapping[str, Any]) -> Path | None:
    for root in metadata.get("roots") or []:
        root_path = Path(str(root))
        if not root_path.is_absolute():
            root_path = report_dir / root_path
        for candidate in (root_path / key, root_path.parent / key):
            if candidate.is_file():
                return candidate
    return None


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` with links resolved if it lies inside ``folder`` (already resolved), else None."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return None
    return real if folder in real.parents else None


def _thumbnail_data_uri(path: Path) -> str | None:
    import cv2
    import numpy as np

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_4) if data.size else None
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = THUMB_SIDE / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def build_page_data(
    df: Any,
    metadata: Mapping[str, Any],
    *,
    report_dir: Path,
    page_dir: Path,
    embed_thumbnails: bool = False,
) -> dict[str, Any]:
    """The JSON the page embeds: column names, rows, rule-set names and a summary."""
    rule_names = [c[len("score_"):] for c in df.columns if str(c).startswith("score_")]
    columns = ["path", "status", "error", "thumb"]
    columns += [c for c in ("width", "height") if c in df.columns]
    columns += [c for c in METRIC_COLUMNS if c in df.columns]
    for name in rule_names:
        columns += [c for c in (f"score_{name}", f"grade_{name}", f"reasons_{name}") if c in df.columns]
    rows = []
    records = df.to_dict("records")
    inside = report_dir.resolve()
    for record in records:
        thumb = None
        overlay = record.get("overlay_path")
        source: Path | None = None
        if isinstance(overlay, str) and overlay:
            # an overlay is a file of the scan folder: an absolute path or one with ".." is not one
            source = _inside(report_dir / overlay, inside)
        elif isinstance(record.get("path"), str):
            source = photo_file(record["path"], report_dir, metadata)
        if source is not None:
            if embed_thumbnails:
                # Embedded bytes travel with the page: only files inside the scan folder are ever read.
                source = _inside(source, inside)
                thumb = _thumbnail_data_uri(source) if source is not None and source.is_file() else None
            else:
                thumb = _relative_url(source, page_dir)
        row = []
        for column in columns:
            row.append(thumb if column == "thumb" else _clean(record.get(column)))
        rows.append(row)
    return {
        "columns": columns,
        "rows": rows,
        "rules": rule_names,
        "meta": {
            "created": str(metadata.get("created", "")),
            "analyzer": str((metadata.get("analyzer") or {}).get("name", "")) if isinstance(metadata.get("analyzer"), Mapping) else str(metadata.get("analyzer", "")),
            "thresholds": {k: _clean(v) for k, v in dict(metadata.get("thresholds") or {}).items()},
        },
    }


def write_html_report(
    df: Any,
    metadata: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    report_dir: str | os.PathLike | None = None,
    title: str = "Exposure report",
    embed_thumbnails: bool = False,
) -> Path:
    """Write the page. ``report_dir`` is where overlay paths are relative to (the scan's folder)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page_dir = out.parent.resolve()
    data = build_page_data(
        df,
        metadata,
        report_dir=Path(report_dir or out.parent).resolve(),
        page_dir=page_dir,
        embed_thumbnails=embed_thumbnails,
    )
    # One pass: a title holding "{{DATA}}" (or "{{TITLE}}") stays text; replacements are never re-scanned.
    fields = {"TITLE": _escape_text(title), "DATA": safe_json(data)}
    html = re.sub(r"\{\{(TITLE|DATA)\}\}", lambda m: fields[m.group(1)], _TEMPLATE)
    atomic_write_text(out, html)
    return out


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{TITLE}}</title>
<style>
:root { --row: 64px; --over: #d23; --under: #25c; --ok: #2a7; --bg: #fafafa; --line: #ddd; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; background: var(--bg); }
header { padding: 10px 16px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 17px; margin: 0 0 4px; }
#summary { color: #555; }
#summary b { color: #222; }
#controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; padding: 8px 16px; background: #fff; border-bottom: 1px solid var(--line); }
#controls label { color: #555; }
input, select { font: inherit; padding: 3px 6px; }
#main { display: flex; height: calc(100vh - 110px); }
#table { flex: 1; display: flex; flex-direction: column; min-width: 0; overflow-x: auto; }
#head, #viewport { min-width: var(--minw); }
#head, .row { display: grid; grid-template-columns: var(--cols); align-items: center; }
#head { background: #eee; border-bottom: 1px solid var(--line); font-weight: 600; }
#head div { padding: 6px; cursor: pointer; user-select: none; white-space: nowrap; overflow: hidden; }
#head div.sorted-asc::after { content: " ▲"; } #head div.sorted-desc::after { content: " ▼"; }
#viewport { flex: 1; overflow-y: auto; position: relative; }
#spacer { position: relative; }
.row { position: absolute; left: 0; right: 0; height: var(--row); border-bottom: 1px solid #eee; background: #fff; cursor: pointer; }
.row:hover { background: #f3f7ff; } .row.selected { background: #e4edff; }
.row div { padding: 2px 6px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.row img { height: calc(var(--row) - 6px); max-width: 92px; object-fit: contain; display: block; }
.nothumb { color: #999; font-size: 11px; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.score { font-weight: 600; }
.bad { color: var(--over); } .mid { color: #b70; } .good { color: var(--ok); }
.err { color: var(--over); }
#detail { width: 380px; border-left: 1px solid var(--line); background: #fff; padding: 12px; overflow-y: auto; }
#detail img { max-width: 100%; display: block; margin-bottom: 8px; }
#detail h2 { font-size: 14px; margin: 0 0 6px; word-break: break-all; }
#detail .reason { margin: 6px 0 10px; white-space: pre-wrap; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 10px; vertical-align: middle; }
</style>
</head>
<body>
<header>
  <h1>{{TITLE}}</h1>
  <div id="summary"></div>
  <div class="legend">overlays: <span style="background:var(--over)"></span>over-exposed <span style="background:var(--under)"></span>under-exposed</div>
</header>
<div id="controls">
  <label>Search <input id="search" type="search" placeholder="file name or reason" size="28"></label>
  <label>Status <select id="status"><option value="">all</option><option value="ok">ok</option><option value="error">error</option></select></label>
  <label>Rule set <select id="ruleset"></select></label>
  <label>Grade <select id="grade"><option value="">all</option></select></label>
  <label>Score below <input id="below" type="number" min="0" max="100" step="1" size="4"></label>
  <span id="count"></span>
</div>
<div id="main">
  <div id="table"><div id="head"></div><div id="viewport"><div id="spacer"></div></div></div>
  <aside id="detail"><p>Select a photo to see its overlay and the reasons of every rule set.</p></aside>
</div>
<script type="application/json" id="report-data">{{DATA}}</script>
<script>
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cols = data.columns, rows = data.rows, rules = data.rules;
  const idx = {}; cols.forEach((c, i) => { idx[c] = i; });
  const ROW = 64, OVERSCAN = 8;
  const LABELS = { path: "photo", status: "status", thumb: "", width: "w", height: "h",
    over_pct: "over %", under_pct: "under %", bad_pct: "bad %", severe_bad_pct: "severe %",
    mean_residual: "mean r", ev_correction: "fix (EV)", face_ev_correction: "face fix (EV)", face_bad_pct: "face bad %", subject_bad_pct: "subject bad %",
    background_bad_pct: "background bad %", sky_bad_pct: "sky bad %" };
  // one score column per rule set (the grade shown beside the score), then the main metrics
  const shown = ["thumb", "path", "status"];
  rules.forEach(r => { if (("score_" + r) in idx) shown.push("score_" + r); });
  ["bad_pct", "over_pct", "under_pct", "ev_correction", "face_bad_pct", "subject_bad_pct"].filter(c => c in idx).forEach(c => shown.push(c));
  // Every header fits its column: each column is at least as wide as its label (measured in the header's
  // own font) plus padding and room for the sort arrow.
  const label = c => LABELS[c] != null ? LABELS[c] : c.replace(/^score_/, "");
  const measure = (() => {
    const probe = document.createElement("span");  // styled like a header cell (see #head div)
    probe.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap;font-weight:600;padding:6px";
    document.body.appendChild(probe);
    return text => { probe.textContent = text + " ▼"; return Math.ceil(probe.getBoundingClientRect().width) + 2; };
  })();
  const minimum = shown.map(c => c === "thumb" ? 100 : Math.max(measure(label(c)), c === "path" ? 200 : c.startsWith("score_") ? 96 : 56));
  const widths = shown.map((c, i) => c === "thumb" ? "100px" : "minmax(" + minimum[i] + "px, " + (c === "path" ? 3 : 1) + "fr)");
  document.documentElement.style.setProperty("--cols", widths.join(" "));
  document.documentElement.style.setProperty("--minw", minimum.reduce((a, b) => a + b, 0) + "px");

  const el = id => document.getElementById(id);
  const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value == null ? "" : String(value); if (cls) e.className = cls; return e; };
  const safeSrc = s => (typeof s === "string" && (s.startsWith("data:image/jpeg;base64,") || !/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s))) ? s : null;
  const fmt = (c, v) => {
    if (v == null) return "";
    if (typeof v === "number") {
      if (c === "mean_residual") return v < 0 ? (-v).toFixed(3) + " over" : v > 0 ? v.toFixed(3) + " under" : "0";
      // stops to add (positive brightens), written as a photographer would: "+1.3 EV", "−0.7 EV"
      if (c.endsWith("ev_correction")) return Math.abs(v) < 0.05 ? "0.0 EV" : (v > 0 ? "+" : "\u2212") + Math.abs(v).toFixed(1) + " EV";
      return Number.isInteger(v) ? String(v) : v.toFixed(1);
    }
    return v;
  };
  const scoreClass = v => v == null ? "" : v < 50 ? "bad" : v < 80 ? "mid" : "good";

  // summary
  const nErr = rows.filter(r => r[idx.status] === "error").length;
  const summary = el("summary");
  summary.appendChild(text("b", rows.length + " photos"));
  summary.appendChild(document.createTextNode(" · " + nErr + " errors"));
  rules.forEach(r => {
    const s = rows.map(x => x[idx["score_" + r]]).filter(v => typeof v === "number");
    const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
    summary.appendChild(document.createTextNode(" · " + r + ": mean " + (isNaN(mean) ? "n/a" : mean.toFixed(1))));
  });
  if (data.meta && data.meta.analyzer) summary.appendChild(document.createTextNode(" · analyzer " + data.meta.analyzer));

  // controls
  const ruleSel = el("ruleset");
  if (!rules.length) ruleSel.appendChild(text("option", "(none)"));
  rules.forEach(r => { const o = text("option", r); o.value = r; ruleSel.appendChild(o); });
  const gradeSel = el("grade");
  function fillGrades() {
    while (gradeSel.options.length > 1) gradeSel.remove(1);
    const r = ruleSel.value, gi = idx["grade_" + r];
    if (gi == null) return;
    Array.from(new Set(rows.map(x => x[gi]).filter(g => g))).sort().forEach(g => { const o = text("option", g); o.value = g; gradeSel.appendChild(o); });
  }

  // sorting: worst first by the first rule set's score, else by bad area
  let sortCol = rules.length ? "score_" + rules[0] : ("bad_pct" in idx ? "bad_pct" : "path");
  let sortDir = sortCol.startsWith("score_") ? 1 : -1;
  let view = [];
  function compare(a, b) {
    const i = idx[sortCol];
    let x = rows[a][i], y = rows[b][i];
    if (x == null && y == null) return a - b;
    if (x == null) return 1;
    if (y == null) return -1;
    if (typeof x === "string") return sortDir * x.localeCompare(y) || a - b;
    return sortDir * (x - y) || a - b;
  }
  function refresh() {
    const q = el("search").value.trim().toLowerCase();
    const st = el("status").value, r = ruleSel.value, g = gradeSel.value;
    const below = el("below").value === "" ? null : Number(el("below").value);
    const si = idx["score_" + r], gi = idx["grade_" + r], ri = idx["reasons_" + r];
    view = [];
    for (let k = 0; k < rows.length; k++) {
      const row = rows[k];
      if (st && row[idx.status] !== st) continue;
      if (g && gi != null && row[gi] !== g) continue;
      if (below != null && si != null && !(typeof row[si] === "number" && row[si] < below)) continue;
      if (q) {
        const hay = (String(row[idx.path]) + " " + (ri != null && row[ri] ? row[ri] : "") + " " + (row[idx.error] || "")).toLowerCase();
        if (!hay.includes(q)) continue;
      }
      view.push(k);
    }
    view.sort(compare);
    el("count").textContent = view.length + " shown";
    el("spacer").style.height = (view.length * ROW) + "px";
    drawHead();
    draw(true);
  }
  function drawHead() {
    const head = el("head");
    head.replaceChildren();
    shown.forEach(c => {
      const d = text("div", label(c));
      d.title = c.startsWith("score_") ? "score under rule set " + c.slice(6) + " (click to sort)" : "click to sort";
      if (c === sortCol) d.className = sortDir > 0 ? "sorted-asc" : "sorted-desc";
      if (c !== "thumb") d.addEventListener("click", () => {
        if (sortCol === c) sortDir = -sortDir; else { sortCol = c; sortDir = c.startsWith("score_") || c === "path" ? 1 : -1; }
        refresh();
      });
      head.appendChild(d);
    });
  }
  let selected = null;
  const pool = new Map();
  function draw(force) {
    const vp = el("viewport"), spacer = el("spacer");
    const first = Math.max(0, Math.floor(vp.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(view.length, Math.ceil((vp.scrollTop + vp.clientHeight) / ROW) + OVERSCAN);
    if (force) { pool.clear(); spacer.replaceChildren(); }
    const keep = new Set();
    for (let p = first; p < last; p++) {
      keep.add(p);
      if (pool.has(p)) continue;
      const k = view[p], row = rows[k];
      const line = document.createElement("div");
      line.className = "row" + (k === selected ? " selected" : "");
      line.style.top = (p * ROW) + "px";
      shown.forEach(c => {
        const v = row[idx[c]];
        if (c === "thumb") {
          const cell = document.createElement("div");
          const src = safeSrc(v);
          if (src) {
            const img = document.createElement("img");
            img.alt = "";
            img.addEventListener("error", () => { img.replaceWith(text("span", "no image", "nothumb")); });
            img.src = src;
            cell.appendChild(img);
          }
          line.appendChild(cell);
        } else if (c === "status") {
          line.appendChild(text("div", v, v === "error" ? "err" : ""));
        } else if (c.startsWith("score_")) {
          const g = row[idx["grade_" + c.slice(6)]];
          line.appendChild(text("div", v == null ? "–" : fmt(c, v) + (g ? " " + g : ""), "num score " + scoreClass(v)));
        } else {
          const cell = text("div", fmt(c, v), typeof v === "number" ? "num" : "");
          if (c === "path") cell.title = String(v);
          line.appendChild(cell);
        }
      });
      line.dataset.k = String(k);
      line.addEventListener("click", () => select(k));
      spacer.appendChild(line);
      pool.set(p, line);
    }
    for (const [p, line] of pool) if (!keep.has(p)) { line.remove(); pool.delete(p); }
  }
  function select(k) {
    selected = k;
    showDetail(k);
    for (const line of pool.values()) line.classList.toggle("selected", line.dataset.k === String(k));
  }
  function showDetail(k) {
    const row = rows[k], d = el("detail");
    d.replaceChildren();
    d.appendChild(text("h2", row[idx.path]));
    const src = safeSrc(row[idx.thumb]);
    if (src) { const img = document.createElement("img"); img.alt = "overlay"; img.src = src; d.appendChild(img); }
    if (row[idx.status] === "error") d.appendChild(text("p", "Error: " + (row[idx.error] || ""), "err"));
    rules.forEach(r => {
      const s = row[idx["score_" + r]], g = row[idx["grade_" + r]];
      d.appendChild(text("b", r + ": " + (s == null ? "n/a" : fmt("score", s)) + (g ? " (" + g + ")" : "")));
      d.appendChild(text("div", row[idx["reasons_" + r]] || "", "reason"));
    });
    ["bad_pct", "over_pct", "under_pct", "severe_bad_pct", "mean_residual", "ev_correction", "face_ev_correction", "face_bad_pct", "subject_bad_pct", "background_bad_pct", "sky_bad_pct", "width", "height"]
      .filter(c => c in idx && row[idx[c]] != null)
      .forEach(c => d.appendChild(text("div", (LABELS[c] || c) + ": " + fmt(c, row[idx[c]]))));
  }
  let frame = 0;
  el("viewport").addEventListener("scroll", () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(false); }); });
  window.addEventListener("resize", () => draw(true));
  ["search", "below"].forEach(id => el(id).addEventListener("input", refresh));
  ["status", "grade"].forEach(id => el(id).addEventListener("change", refresh));
  ruleSel.addEventListener("change", () => { fillGrades(); sortCol = "score_" + ruleSel.value; sortDir = 1; refresh(); });
  fillGrades();
  refresh();
  // deep link: page.html#photo=<report path> opens that photo's details
  const wanted = location.hash.startsWith("#photo=") ? decodeURIComponent(location.hash.slice(7)) : null;
  if (wanted != null) {
    const k = rows.findIndex(r => r[idx.path] === wanted);
    if (k >= 0) {
      const p = view.indexOf(k);
      if (p >= 0) el("viewport").scrollTop = Math.max(0, p * ROW - 2 * ROW);
      draw(false);
      select(k);
    }
  }
  document.body.dataset.ready = "1";
  document.body.dataset.renderMs = String(Math.round(performance.now()));  // navigation start → first draw
})();
</script>
</body>
</html>
"""
