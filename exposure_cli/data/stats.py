"""Label statistics of the simulated training stream, and Markdown tables for docs/DATA.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: |r| above this counts as visibly over / under in the shares (5 % of the grey range).
VISIBLE = 0.05
HIST_EDGES = (-1.0, -0.5, -0.25, -0.1, -0.05, 0.05, 0.1, 0.25, 0.5, 1.0)


def label_statistics(corpus: Path, samples: int = 1000, seed: int = 0, crop: int = 256) -> dict[str, Any]:
    """Draw ``samples`` training items and summarise their labels (per pixel and per item)."""
    from .dataset import ExposureDataset

    ds = ExposureDataset.from_corpus(corpus, split="train", crop=crop, seed=seed, samples_per_epoch=samples)
    hist = np.zeros(len(HIST_EDGES) - 1, np.int64)
    abs_sum = over = under = pixels = 0.0
    per_kind: dict[str, list[float]] = {}
    global_evs = []
    originals = 0
    for i in range(samples):
        s = ds.sample(i)
        r = s.residual
        hist += np.histogram(np.clip(r, -1, 1), bins=HIST_EDGES)[0]
        abs_sum += float(np.abs(r).sum())
        over += float((r < -VISIBLE).sum())
        under += float((r > VISIBLE).sum())
        pixels += r.size
        kind = "original" if s.params.get("original") else s.params.get("kind", "photo")
        per_kind.setdefault(kind, []).append(float(np.abs(r).mean()))
        originals += bool(s.params.get("original"))
        if not s.params.get("original"):
            global_evs.append(float(s.params.get("global_ev", 0.0)))
    return {
        "samples": samples,
        "seed": seed,
        "crop": crop,
        "mean_abs": abs_sum / pixels,
        "over_share": over / pixels,
        "under_share": under / pixels,
        "fine_share": 1 - (over + under) / pixels,
        "original_share": originals / samples,
        "histogram": {f"[{a:+.2f}, {b:+.2f})": int(c) / pixels for a, b, c in zip(HIST_EDGES, HIST_EDGES[1:], hist)},
        "per_kind_mean_abs": {k: (len(v), float(np.mean(v))) for k, v in sorted(per_kind.items())},
        "global_ev_quantiles": {q: float(np.quantile(global_evs, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        if global_evs else {},
    }


def markdown_tables(rows: list[dict[str, Any]], stats: dict[str, Any] | None) -> str:
    """The manifest summary (and label statistics) as Markdown."""
    out = []
    if rows:
        out.append("| source | package | version | kept | train | val | rejected (reason: count) |")
        out.append("|---|---|---|---:|---:|---:|---|")
        tot = [0, 0, 0, 0]
        for r in rows:
            rej = ", ".join(f"{k}: {v}" for k, v in sorted(r["rejected"].items(), key=lambda kv: (-kv[1], kv[0])))
            out.append(f"| {r['source']} | {r['package']} | {r['version']} | {r['kept']} | {r['train']} | {r['val']} | {rej} |")
            tot[0] += r["kept"]
            tot[1] += r["train"]
            tot[2] += r["val"]
            tot[3] += sum(r["rejected"].values())
        out.append(f"| **total** | | | **{tot[0]}** | **{tot[1]}** | **{tot[2]}** | **{tot[3]}** |")
    if stats:
        out.append("")
        out.append(f"Label statistics over {stats['samples']} training items ({stats['crop']}² crops, seed {stats['seed']}):")
        out.append("")
        out.append("| statistic | value |")
        out.append("|---|---:|")
        out.append(f"| mean \\|r\\| per pixel | {stats['mean_abs']:.4f} |")
        out.append(f"| pixels over (r < −{VISIBLE}) | {stats['over_share']:.1%} |")
        out.append(f"| pixels under (r > +{VISIBLE}) | {stats['under_share']:.1%} |")
        out.append(f"| pixels fine (\\|r\\| ≤ {VISIBLE}) | {stats['fine_share']:.1%} |")
        out.append(f"| unmodified originals (r = 0) | {stats['original_share']:.1%} of items |")
        for k, (n, v) in stats["per_kind_mean_abs"].items():
            out.append(f"| mean \\|r\\| of {k} items ({n}) | {v:.4f} |")
        for q, v in stats["global_ev_quantiles"].items():
            out.append(f"| global EV, {int(q * 100)}th percentile | {v:+.2f} |")
        out.append("")
        out.append("| r range (pixels) | share |")
        out.append("|---|---:|")
        for k, v in stats["histogram"].items():
            out.append(f"| {k} | {v:.1%} |")
    return "\n".join(out)


__all__ = ["label_statistics", "markdown_tables"]
