"""Package a training run as a model shipped inside t2igan (src/t2igan/pretrained/NAME/).

    python scripts/ship_pretrained.py RUN --eval EVAL_DIR [--name synthbirds] [--snapshot step-...] [--no-ema]

Writes the exported model without its discriminator but with the DAMSM image encoder (so that `t2igan evaluate
--model NAME` needs no other file), the run's ``run_config.json``, ``EVAL_DIR/metrics.json``, the run's
``curves.png`` and its ``resumes.jsonl`` (what each resume changed, where any did). Paths of this machine are
dropped from ``pipeline.json`` (the data root becomes the command that renders the same data), from
``metrics.json`` (the model becomes its shipped name) and from ``run_config.json`` and ``resumes.jsonl`` (paths
under the repository or the working directory become relative). ``TRAINING.md`` (how the model was trained)
is written by hand and kept.
Refuses a package over the size limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from t2igan.models.registry import PRETRAINED_ROOT, read_model_dir
from t2igan.training.trainer import export_run
from t2igan.utils.io import read_json, write_json_atomic

LIMIT_MB = 25.0
KEEP = ("TRAINING.md",)


def _portable(metrics: dict, name: str) -> dict:
    """``metrics.json`` without this machine's paths: the evaluated model (and its bundled DAMSM) become the
    shipped name, the training run its directory name."""
    model = dict(metrics.get("model") or {})
    if not model:
        return metrics
    path = model.get("path")
    if model.get("damsm") and path and Path(model["damsm"]).resolve() == Path(path).resolve():
        model["damsm"] = name
    elif model.get("damsm"):
        model["damsm"] = Path(model["damsm"]).name
    model["path"] = name
    if isinstance(model.get("trained"), dict) and model["trained"].get("run"):
        model["trained"] = {**model["trained"], "run": Path(model["trained"]["run"]).name}
    return {**metrics, "model": model}


def _relative(obj, roots: tuple[Path, ...]):
    """``obj`` (JSON) with each absolute path under one of ``roots`` written relative to it (the repository
    root or the working directory: a shipped record names no directory of this machine)."""
    if isinstance(obj, dict):
        return {k: _relative(v, roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, roots) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        for root in roots:
            if Path(obj).is_relative_to(root):
                return str(Path(obj).relative_to(root))
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--eval", required=True, type=Path, help="`t2igan evaluate` output dir of this snapshot")
    ap.add_argument("--name", default="synthbirds")
    ap.add_argument("--snapshot", default=None)
    ap.add_argument("--no-ema", dest="ema", action="store_false",
                    help="ship the raw generator even where the snapshot has an EMA (as `t2igan export --no-ema`)")
    ap.add_argument("--prepare", default="t2igan prepare synthetic --out data/synthbirds --size 64 "
                                         "--train 10000 --test 2000 --seed 0",
                    help="the command that makes the training data (recorded instead of this machine's path)")
    args = ap.parse_args(argv)

    metrics = read_json(args.eval / "metrics.json")
    dest = PRETRAINED_ROOT / args.name
    with tempfile.TemporaryDirectory() as tmp:
        out = export_run(args.run, Path(tmp) / "model", snapshot=args.snapshot, use_ema=args.ema,
                         discriminator=False, image_encoder=True)
        meta = read_json(out / "pipeline.json")
        trained = meta["trained"]
        if metrics.get("model", {}).get("trained", {}).get("step") not in (None, trained["step"]):
            raise SystemExit(f"{args.eval} evaluated step {metrics['model']['trained']['step']}, "
                             f"the snapshot is at step {trained['step']}")
        evaluated_ema = metrics.get("model", {}).get("trained", {}).get("ema")
        if evaluated_ema is not None and evaluated_ema != trained.get("ema"):
            raise SystemExit(f"{args.eval} evaluated the {'EMA' if evaluated_ema else 'raw'} generator, this "
                             f"package would hold the {'EMA' if trained.get('ema') else 'raw'} one (see --no-ema)")
        meta["damsm"] = None  # bundled: text_encoder/ + image_encoder/
        meta["data"] = {**meta["data"], "root": None, "prepare": args.prepare}
        meta["trained"] = {**trained, "run": Path(trained["run"]).name}
        write_json_atomic(out / "pipeline.json", meta)
        roots = (Path(__file__).resolve().parents[1], Path.cwd().resolve())
        write_json_atomic(out / "run_config.json", _relative(read_json(args.run / "run_config.json"), roots))
        write_json_atomic(out / "metrics.json", _portable(metrics, args.name))
        if (args.run / "curves.png").is_file():
            shutil.copy(args.run / "curves.png", out / "curves.png")
        if (args.run / "resumes.jsonl").is_file():  # what the run's resumes changed
            lines = (args.run / "resumes.jsonl").read_text(encoding="utf-8").splitlines()
            (out / "resumes.jsonl").write_text("".join(json.dumps(_relative(json.loads(x), roots)) + "\n"
                                                       for x in lines if x.strip()), encoding="utf-8")
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        if size > LIMIT_MB:
            raise SystemExit(f"the package is {size:.1f} MB, over the {LIMIT_MB} MB limit")
        read_model_dir(out)  # opens strictly
        kept = {k: (dest / k).read_bytes() for k in KEEP if (dest / k).is_file()}
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(out, dest)
        for k, data in kept.items():
            (dest / k).write_bytes(data)
    print(f"shipped {args.run} step {trained['step']} as {dest} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
