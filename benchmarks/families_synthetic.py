"""SSA-GAN, DF-GAN, AttnGAN and StackGAN trained on SynthBirds 64 px with the same wall-clock budget each, and
evaluated with the same protocol.

Each family trains with its ``{family}-synthetic`` preset (the same data, DAMSM, batch size, bf16 autocast)
for ``--minutes`` (default 30) on this machine, then ``t2igan evaluate``'s protocol scores its exported model on
the 2,000 test captions: attribute accuracy against the classifier's ceiling, FID-SB (FID in the attribute
classifier's feature space), R-precision (the DAMSM all four were trained with). Also training and sampling
images/s and parameter counts. Writes ``OUT/families_synthetic.md`` (the table, with the command and the
machine) and ``OUT/families_synthetic.png`` (one test caption per row, one family per column, the same noise
seed), and prints both.

    python benchmarks/families_synthetic.py [--minutes 30] [--data data/synthbirds] [--damsm auto]
        [--runs runs-families] [--families ssagan,dfgan,attngan,stackgan] [--out docs] [--reuse]

Runs already finished under ``--runs`` are evaluated again without training when ``--reuse`` is given.
``--set k=v`` applies to every family's run config (e.g. ``--set train.batch_size=16``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from t2igan.data.base import TextImageDataset, load_corpus
from t2igan.data.synthetic import SynthBirdsSpec, prepare_synthbirds
from t2igan.evaluation.protocol import EvalConfig
from t2igan.models.registry import read_model_dir
from t2igan.pipeline import T2IPipeline, evaluate_model
from t2igan.presets import resolve_config
from t2igan.training.trainer import GANRunConfig, find_damsm, train_gan
from t2igan.utils.image import captioned_grid, tensor_to_pil
from t2igan.utils.io import read_json, write_json_atomic

FAMILIES = ("ssagan", "dfgan", "attngan", "stackgan")
PAPER = {"ssagan": "SSA-GAN", "dfgan": "DF-GAN", "attngan": "AttnGAN", "stackgan": "StackGAN"}


def _train(family: str, args: argparse.Namespace, damsm: str) -> Path:
    runs = Path(args.runs)
    if args.reuse:
        done = sorted(p.parent for p in runs.glob(f"*-{family}-synthetic/summary.json"))
        if done:
            print(f"{family}: reusing {done[-1]}")
            return done[-1]
    cfg = resolve_config(GANRunConfig, preset=f"{family}-synthetic", task="gan", overrides=[
        f"data.root={args.data}", f"damsm={damsm}", f"train.max_minutes={args.minutes}", "train.epochs=100000",
        "train.progress=false", "train.eval_every=-1", *args.overrides])  # the whole budget trains
    summary = train_gan(cfg, runs_root=runs)
    return Path(summary["run_dir"])


def _sampling_rate(model: Path, prompts: list[str], repeats: int = 2) -> float:
    pipe = T2IPipeline.from_pretrained(model)
    pipe(prompts[:4], seed=0)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        pipe(prompts, seed=0, batch_size=len(prompts))
        best = min(best, time.perf_counter() - t)
    return len(prompts) / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget per family")
    ap.add_argument("--data", default="data/synthbirds", help="SynthBirds 64 px directory (rendered if missing)")
    ap.add_argument("--damsm", default="auto", help="DAMSM encoders for all families ('auto': newest under --runs)")
    ap.add_argument("--runs", default="runs-families", help="where the runs go")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--evaluator", default=None, help="attribute classifier (default DATA/evaluator)")
    ap.add_argument("--eval-images", type=int, default=None, help="evaluation images (default: 2,000 test captions)")
    ap.add_argument("--out", default="docs", help="where the table and the figure go")
    ap.add_argument("--reuse", action="store_true", help="evaluate finished runs again instead of training")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="run config override a.b=c")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="prompt has .* known words")  # long test captions: first 18 words
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")

    prepare_synthbirds(args.data, SynthBirdsSpec(size=64, train=10000, test=2000, seed=0))
    evaluator = args.evaluator or str(Path(args.data) / "evaluator")
    if not (Path(evaluator) / "config.json").is_file():
        sys.exit(f"attribute classifier not found at {evaluator}: `t2igan train-evaluator --data {args.data}` first")
    damsm = args.damsm
    if damsm == "auto":
        from t2igan.data.base import DataConfig

        damsm = str(find_damsm(args.runs, DataConfig(kind="synthbirds", root=args.data)))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    data_cfg = resolve_config(GANRunConfig, preset="ssagan-synthetic", task="gan",
                              overrides=[f"data.root={args.data}", f"damsm={damsm}"]).data
    data_cfg = data_cfg.replace(vocab=str(Path(damsm) / "vocab.json"))
    corpus = load_corpus(data_cfg)
    test = TextImageDataset.from_config(data_cfg, "test", corpus, train=False)
    picks = [test.records[i * len(test.records) // 6] for i in range(6)]
    captions = [" ".join(corpus.vocab.word(w) for w in r.captions[0]) for r in picks]
    prompts = [" ".join(corpus.vocab.word(w) for w in test.records[i].captions[0]) for i in range(32)]

    rows, columns = [], []
    for family in families:
        t0 = time.perf_counter()
        run = _train(family, args, damsm)
        summary = read_json(run / "summary.json")
        batch = read_json(run / "run_config.json")["train"]["batch_size"] * summary.get("world_size", 1)
        ev = EvalConfig(metrics=("r_precision", "attributes"), num_images=args.eval_images, batch_size=50)
        report = evaluate_model(run / "model", run / "evaluation", ev, data_root=args.data, damsm=damsm,
                                evaluator=evaluator, device="cpu")
        m = read_json(report.parent / "metrics.json")["metrics"]
        md = read_model_dir(run / "model", components=("generator", "discriminator"))
        row = {
            "family": family, "run": str(run), "steps": summary["step"], "epochs": summary["epoch"],
            "minutes": round(summary["minutes"], 1),
            "train_images_per_s": round(summary["step"] * batch / max(summary["minutes"] * 60, 1e-9), 1),
            "sample_images_per_s": round(_sampling_rate(run / "model", prompts), 1),
            "params_G": md.components["generator"].num_parameters(),
            "params_D": md.components["discriminator"].num_parameters(),
            "attr_acc": m["attr_acc"], "ceiling": m["ceiling_attr_acc"],
            "attr_over_ceiling": m["attr_acc"] / m["ceiling_attr_acc"], "fid_sb": m.get("fid_sb"),
            "r_precision": m["r_precision"], "r_precision_std": m["r_precision_std"],
            "wall_minutes": round((time.perf_counter() - t0) / 60, 1),
        }
        rows.append(row)
        print(json.dumps(row))
        pipe = T2IPipeline.from_pretrained(run / "model")
        columns.append(tensor_to_pil(pipe(captions, seed=0).tensors))

    write_json_atomic(out_dir / "families_synthetic.json", {"minutes": args.minutes, "rows": rows})
    head = ("| family | steps (epochs) | train img/s | sample img/s | params G / D | attribute acc. (/ ceiling) "
            "| FID-SB | R-precision |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    body = "\n".join(
        f"| {PAPER[r['family']]} | {r['steps']} ({r['epochs']}) | {r['train_images_per_s']} | "
        f"{r['sample_images_per_s']} | {r['params_G'] / 1e6:.2f} M / {r['params_D'] / 1e6:.2f} M | "
        f"{r['attr_acc']:.3f} ({r['attr_over_ceiling']:.2f}) | "
        f"{r['fid_sb']:.1f} | {r['r_precision']:.3f} ± {r['r_precision_std']:.3f} |" for r in rows)
    cmd = "python benchmarks/families_synthetic.py " + " ".join(sys.argv[1:])
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}")
    text = (f"# Four families on SynthBirds 64 px, {args.minutes:g} minutes of training each\n\n"
            f"`{cmd}` on {machine}. Ceiling of attribute accuracy (the classifier on the real test images): "
            f"{rows[0]['ceiling']:.3f}.\n\n{head}\n{body}\n\n![one test caption per row, one family per column]"
            "(families_synthetic.png)\n")
    (out_dir / "families_synthetic.md").write_text(text, encoding="utf-8")
    # the figure: rows = captions, columns = families (the caption under the first column's image)
    cells, labels = [], []
    for k, cap in enumerate(captions):
        for j, family in enumerate(families):
            cells.append(columns[j][k])
            labels.append(f"{PAPER[family]}: {cap}" if j == 0 else PAPER[family])
    captioned_grid(cells, labels, cols=len(families)).save(out_dir / "families_synthetic.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
