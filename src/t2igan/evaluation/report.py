"""``metrics.json`` and a short Markdown report of an evaluation.

``metrics.json`` = ``{"metrics": {name: number}, "details": {...}, "protocol": {...}, "model": {...}}``: every
number next to how it was obtained. ``report.md`` shows the headline numbers, the protocol, a sample grid and,
for models trained here, the evaluation metrics of the training run over its steps (from its ``log.jsonl``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from t2igan.utils.image import line_plot
from t2igan.utils.io import log_series, write_json_atomic, write_text_atomic

__all__ = ["write_report", "training_series", "HEADLINE"]

# name in metrics.json -> label in the report, in display order
HEADLINE = {
    "fid": "FID", "kid": "KID", "inception_score": "Inception Score", "r_precision": "R-precision",
    "attr_acc": "Attribute accuracy", "ceiling_attr_acc": "Attribute accuracy ceiling (real test images)",
    "attr_acc_relative": "Attribute accuracy / ceiling", "fid_sb": "FID-SB (attribute-classifier features)",
}
_STD = {"kid": "kid_std", "inception_score": "inception_score_std", "r_precision": "r_precision_std"}


def training_series(run_dir: str | Path) -> dict[str, list[tuple[float, float]]]:
    """``eval/*`` values of a training run's ``log.jsonl`` as ``{name: [(step, value), ...]}``."""
    raw = log_series(Path(run_dir) / "log.jsonl", lambda k: k.startswith("eval/") and not k.endswith("_std"))
    return {k.removeprefix("eval/"): v for k, v in raw.items()}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def write_report(out_dir: str | Path, result: dict[str, Any], *, model: dict[str, Any] | None = None,
                 samples: Image.Image | None = None, sample_note: str = "",
                 series: dict[str, list[tuple[float, float]]] | None = None) -> Path:
    """Write ``metrics.json``, ``report.md`` and the pictures into ``out_dir``; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {**result, "model": model or {}}
    write_json_atomic(out / "metrics.json", doc)
    m = result["metrics"]
    lines = ["# Evaluation", ""]
    if model:
        lines += [f"Model: `{model.get('path', '?')}` (family {model.get('family', '?')}"
                  + (f", trained {model['trained'].get('step')} steps" if model.get("trained") else "") + ")", ""]
    lines += ["| metric | value |", "| --- | --- |"]
    for key, label in HEADLINE.items():
        if key in m:
            std = _STD.get(key)
            val = _fmt(m[key]) + (f" ± {_fmt(m[std])}" if std and std in m else "")
            lines.append(f"| {label} | {val} |")
    per_attr = {k.removeprefix("attr_acc_"): v for k, v in m.items()
                if k.startswith("attr_acc_") and not k.startswith(("attr_acc_count", "attr_acc_macro",
                                                                   "attr_acc_relative"))}
    if per_attr:
        ceil = {k.removeprefix("ceiling_attr_acc_"): v for k, v in m.items() if k.startswith("ceiling_attr_acc_")}
        lines += ["", "| attribute | accuracy | ceiling | mentions |", "| --- | --- | --- | --- |"]
        for a, v in per_attr.items():
            lines.append(f"| {a} | {_fmt(v)} | {_fmt(ceil.get(a, float('nan')))} | "
                         f"{m.get('attr_acc_count_' + a, '')} |")
    lines += ["", "## Protocol", ""]
    for k, v in result["protocol"].items():
        lines.append(f"- {k}: {json.dumps(v) if isinstance(v, (dict, list)) else _fmt(v)}")
    if samples is not None:
        samples.save(out / "samples.png")
        lines += ["", "## Samples", "", sample_note, "", "![samples](samples.png)"]
    if series:
        for name, pts in series.items():
            line_plot({name: pts}, title=f"{name} during training").save(out / f"train_{name}.png")
        lines += ["", "## During training", ""] + [f"![{n}](train_{n}.png)" for n in series]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
