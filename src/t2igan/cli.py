"""The ``t2igan`` command: parse arguments, build a config, make one library call.

Subcommands:
  prepare         render SynthBirds, or check (and index) CUB / COCO / Oxford-102 / a folder of captioned images
  pretrain-damsm  pretrain the DAMSM text and image encoders
  train           train a GAN (SSA-GAN, DF-GAN)
  export          export a model directory from a training run
  evaluate        FID, KID, IS, R-precision and attribute accuracy of a model, with the protocol
  train-evaluator train the SynthBirds attribute classifier behind attribute accuracy and FID-SB
  convert         import official checkpoints
  generate        images from prompts with the shipped SynthBirds model (no set-up)
  sample          generate images from prompts (or a dataset split) with any exported model
  quickstart      the whole default workflow on the built-in SynthBirds dataset
  serve           a web demo of a model
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from t2igan import __version__

log = logging.getLogger("t2igan")

DEFAULT_QUICKSTART_DIR = "t2igan-quickstart"


# -- prepare ----------------------------------------------------------------------------------------------------
def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="render SynthBirds, or check and index a dataset on disk",
                       description="Render the built-in SynthBirds dataset, or check a dataset in the AttnGAN "
                                   "layout (CUB, COCO, Oxford-102) or a folder of captioned images, building "
                                   "captions.pickle where it is missing.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    s = kinds.add_parser("synthetic", help="render SynthBirds in the CUB layout",
                         description="Render SynthBirds, a procedurally drawn CUB-like captioned bird dataset.")
    s.add_argument("--out", required=True, help="output directory (must be empty or hold SynthBirds)")
    s.add_argument("--size", type=int, default=64, help="image side in pixels")
    s.add_argument("--train", type=int, default=10000, help="number of training images")
    s.add_argument("--test", type=int, default=2000, help="number of test images (unseen species)")
    s.add_argument("--seed", type=int, default=0, help="random seed (same arguments give identical files)")
    s.add_argument("--captions-per-image", type=int, default=10, help="captions written per image")
    s.add_argument("--workers", type=int, default=None, help="rendering processes (default: up to 4)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing SynthBirds directory")
    s.add_argument("--preview", default=None,
                   help="also write a grid of samples with captions to this PNG (default: OUT/preview.png)")
    s.set_defaults(func=cmd_prepare_synthetic)
    for kind, what in (("cub", "CUB-200-2011"), ("coco", "COCO-2014"), ("flowers", "Oxford-102 flowers"),
                       ("folder", "a folder of images with captions")):
        how = ("the images and their captions (captions.jsonl or one .txt per image) are found; the summary "
               "gives the size of each split" if kind == "folder" else
               "every split list and image is found; without captions.pickle it is built from text/ (every "
               "caption file checked); with one, the pickle is what is read and text/ is not needed")
        k = kinds.add_parser(kind, help=f"check {what} and build its caption index",
                             description=f"Check {what} on disk: {how}. Images that cannot be used are listed; "
                                         "training can leave them out with --set data.skip_bad_images=true.")
        k.add_argument("--root", required=True, help="dataset directory")
        if kind in ("coco", "flowers"):
            k.add_argument("--images-dir", default=None, help="where the images are, if not under ROOT")
        k.add_argument("--captions-per-image", type=int, default=None,
                       help="captions per image (default: the dataset's own)")
        if kind == "folder":
            k.add_argument("--test-fraction", type=float, default=0.1,
                           help="share of images held out when there are no train.txt/test.txt lists")
        else:
            k.add_argument("--text-embeddings", default=None, metavar="FILE",
                           help="also check precomputed embeddings in each split directory, e.g. StackGAN's "
                                "char-CNN-RNN-embeddings.pickle (train with --set data.text_embeddings=FILE)")
        k.add_argument("--verify", action="store_true", help="decode every image and report unreadable ones")
        k.add_argument("--json", action="store_true", help="print the summary as JSON")
        k.set_defaults(func=cmd_prepare_dataset, dataset_kind=kind)


def cmd_prepare_synthetic(args: argparse.Namespace) -> int:
    from t2igan.data.synthetic import SynthBirdsSpec, prepare_synthbirds

    spec = SynthBirdsSpec(size=args.size, train=args.train, test=args.test, seed=args.seed,
                          captions_per_image=args.captions_per_image)
    t0 = time.perf_counter()
    manifest = prepare_synthbirds(args.out, spec, workers=args.workers, overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    preview = Path(args.preview) if args.preview else Path(args.out) / "preview.png"
    write_preview(args.out, preview)
    print(f"SynthBirds: {manifest['images']['train']} train + {manifest['images']['test']} test images at "
          f"{spec.size}px in {args.out} ({dt:.1f} s)")
    print(f"preview: {preview}")
    return 0


def cmd_prepare_dataset(args: argparse.Namespace) -> int:
    from t2igan.data import DataConfig, TextImageDataset, load_corpus

    cfg = DataConfig(kind=args.dataset_kind, root=args.root, captions_per_image=args.captions_per_image,
                     images_dir=getattr(args, "images_dir", None),
                     test_fraction=getattr(args, "test_fraction", 0.1),
                     text_embeddings=getattr(args, "text_embeddings", None))
    corpus = load_corpus(cfg)
    summary = corpus.summary()
    if cfg.text_embeddings:
        recs = [r for split in corpus.splits.values() for r in split]
        if recs:
            summary["text_embeddings"] = f"{cfg.text_embeddings}: {recs[0].embeddings.shape[0]} x " \
                                         f"{recs[0].embeddings.shape[1]}-d per image"
    if args.verify:
        bad = 0
        for split in corpus.splits:
            ds = TextImageDataset(corpus, split, image_size=64, skip_bad_images=True)
            bad += len(ds.skipped)
            for path, reason in ds.skipped[:20]:
                print(f"unreadable: {path}: {reason}", file=sys.stderr)
        summary["unreadable_images"] = bad
    warnings_ = _split_warnings(corpus)
    if warnings_:
        summary["warnings"] = warnings_
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k, v in summary.items():
            if k != "warnings":
                print(f"{k:>20}: {v}")
    for w in warnings_:
        print(f"t2igan prepare: warning: {w}", file=sys.stderr)
    return 1 if summary.get("unreadable_images") else 0


def _split_warnings(corpus) -> list[str]:
    """What makes a split unusable for training or evaluation (said, not refused: the data may still grow)."""
    out = []
    for split in ("train", "test"):
        records = corpus.splits.get(split, [])
        classes = {r.class_id for r in records}
        if not records:
            out.append(f"the {split} split has no images" + (" (evaluation and R-precision need test images)"
                                                             if split == "test" else ""))
        elif split == "test" and len(classes) < 2:
            out.append(f"the test split has {len(records)} image(s) of a single class: R-precision compares "
                       "captions of other classes and cannot be computed")
    return out


def write_preview(root: str | Path, path: Path, n: int = 12, size: int = 64) -> Path:
    """A grid of training images as the model sees them (CUB crop, train transform) with one caption each."""
    from t2igan.data import DataConfig, TextImageDataset, load_corpus
    from t2igan.utils.image import captioned_grid, tensor_to_pil
    from t2igan.utils.io import atomic_write

    corpus = load_corpus(DataConfig(kind="synthbirds", root=str(root), image_size=size))
    ds = TextImageDataset(corpus, "train", image_size=size, train=False, caption_mode="first")
    step = max(1, len(ds) // n)
    items = [ds[i * step] for i in range(min(n, len(ds)))]
    import torch

    images = tensor_to_pil(torch.stack([it["image"] for it in items]))
    # the caption as written (the model sees it tokenized: lower case, no punctuation)
    captions = [(Path(root) / "text" / f"{it['key']}.txt").read_text(encoding="utf-8").splitlines()[
        it["caption_index"]] for it in items]
    grid = captioned_grid(images, captions, cols=4, cell=160)
    with atomic_write(path, "wb") as f:
        grid.save(f, format="PNG")
    return path


# -- DAMSM ----------------------------------------------------------------------------------------------------
def _add_config_args(p: argparse.ArgumentParser, task: str, default_preset: str) -> None:
    p.add_argument("--preset", default=default_preset,
                   help=f"named preset (default: {default_preset}); see --list-presets")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--config", default=None, help="YAML/JSON file with config fields (refines the preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field, e.g. --set train.batch_size=32 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(task=task)


def _resolve(args: argparse.Namespace, cls: type, extra: list[str]):
    from t2igan.presets import resolve_config

    return resolve_config(cls, preset=args.preset, task=args.task, config_file=args.config,
                          overrides=[*extra, *args.overrides])


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """The flags every training command shares."""
    p.add_argument("--data", default=None, help="dataset root (shortcut for --set data.root=...)")
    p.add_argument("--epochs", type=int, default=None, help="shortcut for --set train.epochs=N")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this call (train.max_minutes)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--runs", default="runs", help="where run directories are created")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its latest snapshot")


def _run_overrides(args: argparse.Namespace) -> list[str]:
    extra = [f"data.root={args.data}"] if args.data else []
    extra += [f"train.epochs={args.epochs}"] if args.epochs is not None else []
    extra += [f"train.max_minutes={args.minutes}"] if args.minutes is not None else []
    extra += [f"train.device={args.device}"] if args.device else []
    return extra


def _resolve_or_resume(args: argparse.Namespace, cls: type, extra: list[str]):
    """The config of a new run (preset -> file -> overrides), or of ``--resume RUN`` (its run_config.json)."""
    if not args.resume:
        return _resolve(args, cls, extra)
    from t2igan.config import apply_overrides, from_dict
    from t2igan.utils.io import read_json

    path = Path(args.resume) / "run_config.json"
    return from_dict(cls, apply_overrides(read_json(path), [*extra, *args.overrides], cls), source=str(path))


def _list_presets(task: str) -> int:
    from t2igan.presets import PRESETS

    for name, p in PRESETS.items():
        if p.task == task:
            print(f"{name:<20} {p.description}")
    return 0


def _add_pretrain_damsm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain-damsm", help="pretrain the DAMSM text and image encoders",
                       description="Pretrain DAMSM (text encoder + image encoder) on a dataset. Writes a "
                                   "numbered run directory with logs, snapshots, attention figures and the "
                                   "exported encoders (ENCODERS = RUN/encoders).")
    _add_config_args(p, "damsm", "damsm-synthbirds")
    _add_run_args(p)
    p.set_defaults(func=cmd_pretrain_damsm)


def cmd_pretrain_damsm(args: argparse.Namespace) -> int:
    from t2igan.config import to_dict
    from t2igan.training.damsm import DAMSMRunConfig, pretrain_damsm

    if args.list_presets:
        return _list_presets("damsm")
    cfg = _resolve_or_resume(args, DAMSMRunConfig, _run_overrides(args))
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    summary = pretrain_damsm(cfg, runs_root=args.runs, resume=args.resume)
    _print_summary("DAMSM", summary)
    if summary["stopped"] in ("signal", "time budget", "non-finite loss"):
        print(f"to continue: t2igan pretrain-damsm --resume {summary['run_dir']}")
    if summary["stopped"] == "non-finite loss":
        print(f"t2igan pretrain-damsm: error: the loss was not finite for {cfg.train.max_nonfinite} steps in a "
              "row; the run stopped with a snapshot (try a lower train.lr, or train.amp=false)", file=sys.stderr)
        return 1
    return 0


def _print_summary(what: str, summary: dict) -> None:
    print(f"{what}: {summary['stopped']} after {summary['epoch']} epochs ({summary['minutes']:.1f} min)")
    for k, v in summary.items():
        if k.startswith(("val/", "train/")):
            print(f"  {k:<24} {v:.4f}")
    print(f"  run:      {summary['run_dir']}")
    print(f"  encoders: {summary['encoders']}")


# -- train ------------------------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GAN (SSA-GAN, DF-GAN) with a pretrained DAMSM",
                       description="Train a text-to-image GAN. Writes a numbered run directory with "
                                   "run_config.json, log.jsonl, TensorBoard logs, sample grids, snapshots and the "
                                   "exported model (RUN/model, opened by `t2igan sample --model`). Under torchrun "
                                   "every process trains on its own shard (batch_size is per process).")
    _add_config_args(p, "gan", "ssagan-synthetic")
    _add_run_args(p)
    p.add_argument("--damsm", default=None, metavar="DIR",
                   help="pretrained DAMSM (text_encoder/, image_encoder/, vocab.json), e.g. RUN/encoders of "
                        "`t2igan pretrain-damsm`; 'auto' (preset default) takes the newest one on the same data")
    p.add_argument("--steps", type=int, default=None, help="stop after N steps in total (train.max_steps)")
    p.add_argument("--amp", choices=("off", "auto", "bf16", "fp16"), default=None,
                   help="mixed precision (train.amp; auto: bf16 where the device has it natively, else fp32)")
    p.add_argument("--finetune-text-encoder", action=argparse.BooleanOptionalAction, default=None,
                   help="SSA-GAN's fine-tuning variant: train the text encoder jointly (DAMSM weight 0.1)")
    p.add_argument("--init-from", default=None, metavar="RUN_OR_MODEL",
                   help="start the generator from a trained one (StackGAN stage II: the stage-I run, frozen) "
                        "(train.init_from)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from t2igan.config import to_dict
    from t2igan.training.trainer import GANRunConfig, TrainError, train_gan
    from t2igan.utils.dist import is_main

    if args.list_presets:
        return _list_presets("gan")
    extra = _run_overrides(args)
    extra += [f"damsm={args.damsm}"] if args.damsm else []
    extra += [f"train.max_steps={args.steps}"] if args.steps is not None else []
    extra += [f"train.amp={args.amp}"] if args.amp else []
    extra += [f"train.init_from={args.init_from}"] if args.init_from else []
    if args.finetune_text_encoder is not None:
        extra += [f"objective.finetune_text_encoder={str(args.finetune_text_encoder).lower()}"]
        extra += ["objective.damsm_weight=0.1"] if args.finetune_text_encoder else []
    cfg = _resolve_or_resume(args, GANRunConfig, extra)
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    try:
        summary = train_gan(cfg, runs_root=args.runs, resume=args.resume)
    except TrainError as exc:
        print(f"t2igan train: error: {exc}", file=sys.stderr)
        return 1
    if not is_main():
        return 0
    print(f"{cfg.family}: {summary['stopped']} at step {summary['step']} (epoch {summary['epoch']}, "
          f"{summary['minutes']:.1f} min)")
    for k, v in summary.items():
        if k.startswith("eval/"):
            print(f"  {k:<24} {v:.4f}")
    print(f"  run:   {summary['run_dir']}")
    print(f"  model: {summary['model']}")
    if summary["stopped"] != "done":
        print(f"to continue: t2igan train --resume {summary['run_dir']}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model directory from a training run's snapshot",
                       description="Write a model directory (what `t2igan sample --model` and "
                                   "T2IPipeline.from_pretrained open) from a snapshot of a GAN training run.")
    p.add_argument("run", help="training run directory")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--snapshot", default=None, help="snapshot name (default: the latest)")
    p.add_argument("--no-ema", dest="ema", action="store_false", help="export the raw generator, not its EMA")
    p.add_argument("--no-discriminator", dest="discriminator", action="store_false",
                   help="leave the discriminator out (smaller; enough to sample, evaluate and serve)")
    p.add_argument("--with-image-encoder", dest="image_encoder", action="store_true",
                   help="bundle the DAMSM image encoder, so R-precision needs only the model directory")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from t2igan.training.trainer import export_run

    out = export_run(args.run, args.out, snapshot=args.snapshot, use_ema=args.ema,
                     discriminator=args.discriminator, image_encoder=args.image_encoder)
    print(f"model: {out}")
    return 0


# -- evaluate ---------------------------------------------------------------------------------------------------
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model: FID, KID, IS, R-precision, attribute accuracy",
                       description="Generate images for the test captions of a dataset and compute metrics with an "
                                   "explicit protocol. Writes OUT/metrics.json (every value with its protocol), "
                                   "OUT/report.md and pictures. Under torchrun the generation is sharded across "
                                   "processes; the numbers do not depend on the number of processes.")
    p.add_argument("--model", required=True, help="exported model directory")
    p.add_argument("--data", default=None, help="dataset root (default: the data the model was trained on)")
    p.add_argument("--kind", default=None, choices=["synthbirds", "cub", "coco", "flowers", "folder"],
                   help="dataset reader (default: the model's training data kind, else synthbirds)")
    p.add_argument("--metrics", default="fid,kid,is,r_precision",
                   help="comma-separated: fid, kid, is, r_precision, attributes (SynthBirds)")
    p.add_argument("--num-images", type=int, default=None,
                   help="images to generate (default: one per test caption job; 30000 is the papers' count)")
    p.add_argument("--captions-per-image", type=int, default=1, help="captions of each test image to use")
    p.add_argument("--truncation", type=float, default=None, help="truncated noise, e.g. 0.88 (DF-GAN)")
    p.add_argument("--seed", type=int, default=0, help="image i's noise depends only on (seed, i)")
    p.add_argument("--extractor", default="inception-fid",
                   help="FID/KID/IS features: inception-fid (TF FID Inception, the usual protocol), "
                        "inception-torchvision (what DF-GAN reports), random-tiny (smoke tests only)")
    p.add_argument("--extractor-weights", default=None, help="weights file of the extractor (default: torch "
                                                             "hub's checkpoints cache)")
    p.add_argument("--damsm", default=None, help="DAMSM encoders for R-precision (default: the model's own)")
    p.add_argument("--evaluator", default=None, help="attribute classifier dir (default: DATA/evaluator)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--cache-dir", default=None, help="reference statistics cache (default ~/.cache/t2igan/stats)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from t2igan.evaluation.protocol import EvalConfig
    from t2igan.pipeline import evaluate_model

    cfg = EvalConfig(metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
                     num_images=args.num_images, captions_per_image=args.captions_per_image, seed=args.seed,
                     truncation=args.truncation, batch_size=args.batch_size, extractor=args.extractor,
                     extractor_weights=args.extractor_weights, cache_dir=args.cache_dir)
    report = evaluate_model(args.model, args.out, cfg, data_root=args.data, kind=args.kind, damsm=args.damsm,
                            evaluator=args.evaluator, device=args.device)
    if report is None:  # not rank 0
        return 0
    doc = json.loads((Path(args.out) / "metrics.json").read_text(encoding="utf-8"))
    from t2igan.evaluation.report import HEADLINE

    for key, label in HEADLINE.items():
        if key in doc["metrics"]:
            print(f"  {label:<48} {doc['metrics'][key]:.4f}")
    print(f"  metrics: {Path(args.out) / 'metrics.json'}")
    print(f"  report:  {report}")
    return 0


# -- train-evaluator --------------------------------------------------------------------------------------------
def _add_train_evaluator(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-evaluator", help="train the SynthBirds attribute classifier (attribute accuracy, FID-SB)",
                       description="Train the classifier that scores generated SynthBirds images on the attributes "
                                   "their captions mention (its features give FID-SB). Writes OUT/config.json, "
                                   "model.safetensors, evaluator.json (data fingerprint, ceiling accuracies) and "
                                   "log.jsonl. `t2igan evaluate` and training look for it in DATA/evaluator.")
    p.add_argument("--data", required=True, help="SynthBirds dataset root (with attributes.jsonl)")
    p.add_argument("--out", default=None, help="output directory (default: DATA/evaluator)")
    p.add_argument("--epochs", type=int, default=None, help="shortcut for --set epochs=N (default 20)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (max_minutes)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (num_threads)")
    p.add_argument("--config", default=None, help="YAML/JSON with EvaluatorTrainConfig fields")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set batch_size=64 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_train_evaluator)


def cmd_train_evaluator(args: argparse.Namespace) -> int:
    from t2igan.config import apply_overrides, from_dict, read_config_file, to_dict
    from t2igan.training.evaluator import EvaluatorTrainConfig, train_evaluator

    extra = [f"epochs={args.epochs}"] if args.epochs is not None else []
    extra += [f"max_minutes={args.minutes}"] if args.minutes is not None else []
    extra += [f"device={args.device}"] if args.device else []
    extra += [f"num_threads={args.threads}"] if args.threads else []
    base = read_config_file(args.config) if args.config else {}
    cfg = from_dict(EvaluatorTrainConfig, apply_overrides(base, [*extra, *args.overrides], EvaluatorTrainConfig),
                    source=args.config or "<command line>")
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    out = args.out or str(Path(args.data) / "evaluator")
    s = train_evaluator(args.data, out, cfg, overwrite=args.overwrite)
    print(f"attribute classifier: {s['stopped']} after {s['epochs']} epochs ({s['minutes']:.1f} min) -> {s['out_dir']}")
    print(f"  data fingerprint {s['data_fingerprint']}; ceiling attribute accuracy {s['ceiling_attr_acc']:.4f}")
    for k, v in s["ceiling"].items():
        if k.startswith("ceiling_attr_acc_") and "count" not in k:
            print(f"  {k[len('ceiling_attr_acc_'):]:<14} {v:.4f}")
    return 0


# -- serve ------------------------------------------------------------------------------------------------------
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a web demo of a model (prompt in, images and masks out)",
                       description="Serve a page where a prompt, a seed and a number of images give images (and "
                                   "SSA-GAN's masks per block). Listens on 127.0.0.1 unless told otherwise; "
                                   "requests are bounded in size and served a few at a time.")
    p.add_argument("--model", default="synthbirds",
                   help="exported model directory or shipped model name (default: synthbirds, the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-images", type=int, default=8, help="images per request")
    p.add_argument("--max-prompt-chars", type=int, default=300)
    p.add_argument("--max-concurrent", type=int, default=1, help="generations at a time (others wait)")
    p.add_argument("--queue-timeout", type=float, default=30.0, help="seconds a request waits before 'busy'")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from t2igan.demo import serve

    serve(args.model, host=args.host, port=args.port, max_images=args.max_images,
          max_prompt_chars=args.max_prompt_chars, max_concurrent=args.max_concurrent,
          queue_timeout_s=args.queue_timeout, device=args.device)
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import official checkpoints into t2igan's format",
                       description="Import checkpoints released with the official code.")
    kinds = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    d = kinds.add_parser("damsm", help="AttnGAN/SSA-GAN/DF-GAN DAMSM encoders",
                         description="Import DAMSM text_encoderNNN.pth (and image_encoderNNN.pth) with the "
                                     "captions.pickle they were trained with.")
    d.add_argument("--text-encoder", required=True, help="official text_encoder*.pth")
    d.add_argument("--image-encoder", default=None, help="official image_encoder*.pth")
    d.add_argument("--captions", default=None,
                   help="the dataset's captions.pickle / captions_DAMSM.pickle (its vocabulary is checked "
                        "against the encoder and saved as vocab.json)")
    d.add_argument("--out", required=True, help="output directory")
    d.set_defaults(func=cmd_convert_damsm)
    for fam, what in (("ssagan", "SSA-GAN netG_*.pth (and netD_*.pth)"),
                      ("dfgan", "DF-GAN CVPR 2022 state_epoch_*.pth")):
        g = kinds.add_parser(fam, help=f"{what} with the DAMSM text encoder",
                             description=f"Import {what} together with the DAMSM text encoder and the "
                                         "captions.pickle it was trained with, into a model directory that "
                                         "`t2igan sample` and T2IPipeline open.")
        if fam == "ssagan":
            g.add_argument("--netG", required=True, help="official netG_*.pth")
            g.add_argument("--netD", default=None, help="official netD_*.pth (optional)")
        else:
            g.add_argument("--state-epoch", required=True, help="official state_epoch_*.pth")
        g.add_argument("--text-encoder", required=True, help="the DAMSM text_encoder*.pth the GAN was trained with")
        g.add_argument("--captions", required=True, help="the dataset's captions.pickle / captions_DAMSM.pickle")
        g.add_argument("--words-num", type=int, default=18, help="longest prompt in words (official: 18)")
        g.add_argument("--out", required=True, help="output model directory")
        g.set_defaults(func=cmd_convert_gan, family_name=fam)
    a = kinds.add_parser("attngan", help="AttnGAN netG_epoch_*.pth / bird_AttnGAN2.pth (and netD0-2.pth) with the "
                                         "DAMSM text encoder",
                         description="Import an AttnGAN generator (netG_epoch_*.pth, or the released "
                                     "bird_AttnGAN2.pth / coco_AttnGAN2.pth; the AttnDCGAN one too) and optionally "
                                     "its discriminators, together with the DAMSM text encoder and the "
                                     "captions.pickle it was trained with, into a model directory.")
    a.add_argument("--netG", required=True, help="official netG_epoch_*.pth / bird_AttnGAN2.pth / coco_AttnGAN2.pth")
    a.add_argument("--netD", action="append", default=None, metavar="FILE",
                   help="official netD0.pth, netD1.pth, netD2.pth: repeat once per stage, in stage order (optional)")
    a.add_argument("--text-encoder", required=True, help="the DAMSM text_encoder*.pth the GAN was trained with")
    a.add_argument("--captions", required=True, help="the dataset's captions.pickle / captions_DAMSM.pickle")
    a.add_argument("--words-num", type=int, default=18, help="longest prompt in words (official: 18 for birds)")
    a.add_argument("--out", required=True, help="output model directory")
    a.set_defaults(func=cmd_convert_gan, family_name="attngan")
    st = kinds.add_parser("stackgan", help="StackGAN-Pytorch netG_epoch_*.pth (and netD_epoch_*.pth), stage I or II",
                          description="Import a StackGAN-Pytorch generator (stage I, or stage II with its embedded "
                                      "stage-I generator; the stage is read from the file) and optionally the "
                                      "discriminator of the same stage, into a model directory. The released "
                                      "models condition on 1024-d char-CNN-RNN embeddings: without --text-encoder "
                                      "the directory holds the networks only and cannot take text prompts. A "
                                      "model trained on DAMSM sentence embeddings is imported with its "
                                      "--text-encoder and --captions.")
    st.add_argument("--netG", required=True, help="official netG_epoch_*.pth (stage I or II)")
    st.add_argument("--netD", default=None, help="official netD_epoch_*.pth of the same stage (optional)")
    st.add_argument("--text-encoder", default=None,
                    help="the DAMSM text_encoder*.pth the GAN was trained with (only for a model conditioned on "
                         "DAMSM sentence embeddings; needs --captions)")
    st.add_argument("--captions", default=None,
                    help="the dataset's captions.pickle / captions_DAMSM.pickle (with --text-encoder)")
    st.add_argument("--words-num", type=int, default=18, help="longest prompt in words (with --text-encoder)")
    st.add_argument("--out", required=True, help="output model directory")
    st.set_defaults(func=cmd_convert_gan, family_name="stackgan")


def cmd_convert_gan(args: argparse.Namespace) -> int:
    from t2igan.convert.official import convert_gan

    kwargs = ({"state_epoch": args.state_epoch} if args.family_name == "dfgan"
              else {"netG": args.netG, "netD": args.netD})
    out = convert_gan(args.family_name, text_encoder=args.text_encoder, captions=args.captions,
                      out_dir=args.out, words_num=args.words_num, **kwargs)
    if args.family_name in ("ssagan", "dfgan"):
        print(f"wrote {out}; try: t2igan sample --model {out} --prompt \"a small bird with a red crown\" "
              "--out samples")
    elif args.text_encoder is None:
        print(f"wrote {out} (no text encoder: the generator conditions on char-CNN-RNN embeddings; open it with "
              "t2igan.models.registry.read_model_dir)")
    else:
        print(f"wrote {out}")
    return 0


def cmd_convert_damsm(args: argparse.Namespace) -> int:
    from t2igan.convert.official import convert_damsm

    out = convert_damsm(args.text_encoder, args.image_encoder, args.captions, out_dir=args.out)
    print(f"wrote {out}")
    return 0


# -- sample -----------------------------------------------------------------------------------------------------
def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from prompts with an exported model",
                       description="Generate images from prompts. Writes one PNG per image, a captioned grid "
                                   "and, with --masks, each SSA-GAN block's mask over its image.")
    p.add_argument("--model", required=True,
                   help="exported model directory (pipeline.json, ...) or a shipped model's name (synthbirds)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    src.add_argument("--prompts-file", help="a text file with one prompt per line")
    src.add_argument("--split", choices=["train", "test"],
                     help="generate for the captions of a dataset split (for evaluation); shards across torchrun")
    p.add_argument("--data", default=None, help="with --split: the dataset root")
    p.add_argument("--kind", default="synthbirds", choices=["synthbirds", "cub", "coco", "flowers", "folder"],
                   help="with --split: the dataset reader")
    p.add_argument("--captions-per-image", type=int, default=None,
                   help="with --split: use the first K captions of each image (default: all)")
    p.add_argument("--n", type=int, default=1, help="images per prompt")
    p.add_argument("--seed", type=int, default=0, help="seed: image i's noise depends only on (seed, i)")
    p.add_argument("--truncation", type=float, default=None, help="truncated noise, e.g. 0.88 (DF-GAN)")
    p.add_argument("--masks", action="store_true",
                   help="also draw SSA-GAN's masks per block, or AttnGAN's word attention with the attended words")
    p.add_argument("--batch-size", type=int, default=16, help="images generated at once")
    _add_inference_args(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_sample)


def _add_inference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="generator precision: fp32 (default), bf16 autocast (about 2-3x faster on CPUs with "
                        "AVX512-BF16/AMX, far slower on AVX2-only CPUs), fp16 (CUDA only)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generator with frozen weights: the first batch of each size compiles "
                        "(tens of seconds), the rest run faster; worth it for many images")


def _generate_and_write(model: str, prompts: list[str], *, out_dir: Path, n: int, seed: int,
                        truncation: float | None, masks: bool, batch_size: int, device: str,
                        command: str, precision: str = "fp32", compile: bool = False) -> Path:
    """Images for ``prompts`` -> OUT/pNNN_KK.png, grid.png, prompts.jsonl (and masks/); prints where they are."""
    from t2igan.pipeline import T2IPipeline
    from t2igan.utils.image import attention_strip, captioned_grid, mask_strip

    pipe = T2IPipeline.from_pretrained(model, device=device, precision=precision, compile=compile)
    if masks and not pipe.has_masks:
        print(f"t2igan {command}: note: {pipe.family} models have no masks; --masks ignored", file=sys.stderr)
    with warnings.catch_warnings(record=True):  # unknown words: reported once per prompt below
        out = pipe(prompts, seed=seed, num_images_per_prompt=n, truncation=truncation, batch_size=batch_size)
    for p, unknown in enumerate(out.unknown_words[::n]):
        if unknown:
            print(f"t2igan {command}: prompt {p + 1}: not in the model's vocabulary, left out: "
                  f"{', '.join(unknown)}", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(out.images):
        p, k = divmod(i, n)
        name = f"p{p:03d}_{k:02d}.png"
        img.save(out_dir / name)
        names.append(name)
        if masks and out.masks is not None:
            (out_dir / "masks").mkdir(exist_ok=True)
            if out.masks[-1].shape[1] > 1:  # word attention (AttnGAN): the last stage's map of every word
                attention_strip(img, out.masks[-1][i], out.words[i]).save(out_dir / "masks" / name)
            else:  # SSA-GAN: each block's mask
                mask_strip(img, [m[i] for m in out.masks]).save(out_dir / "masks" / name)
    captioned_grid(out.images, out.prompts, cols=max(n, min(4, len(out.images)))).save(out_dir / "grid.png")
    with open(out_dir / "prompts.jsonl", "w", encoding="utf-8") as f:
        for i, name in enumerate(names):
            f.write(json.dumps({"file": name, "prompt": out.prompts[i], "seed": out.seeds[i][0],
                                "index": out.seeds[i][1], "words": out.words[i],
                                "unknown_words": out.unknown_words[i]}) + "\n")
    print(f"wrote {len(names)} image{'s' if len(names) != 1 else ''}, grid.png"
          f"{' and masks/' if masks and out.masks else ''} to {out_dir}")
    return out_dir


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="images from a prompt with the shipped SynthBirds model (or --model)",
                       description="Generate images from one or more prompts. Uses the SSA-GAN model shipped "
                                   "with t2igan (SynthBirds, 64 px) unless --model names another; writes PNGs, "
                                   "a captioned grid and SSA-GAN's masks to --out.")
    p.add_argument("prompt", nargs="+", help='prompt(s), e.g. "a small bird with a red crown and blue wings"')
    p.add_argument("--model", default="synthbirds", help="shipped model name or exported model directory "
                                                          "(default: synthbirds)")
    p.add_argument("--n", type=int, default=4, help="images per prompt (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed: image i's noise depends only on (seed, i)")
    p.add_argument("--truncation", type=float, default=None, help="truncated noise, e.g. 0.88")
    p.add_argument("--no-masks", dest="masks", action="store_false", help="do not draw SSA-GAN's masks")
    p.add_argument("--batch-size", type=int, default=16, help="images generated at once")
    _add_inference_args(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", default="t2igan-generated", help="output directory (default: ./t2igan-generated)")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    prompts = [p.strip() for p in args.prompt]
    if not all(prompts):
        raise ValueError("a prompt is empty")
    _generate_and_write(args.model, prompts, out_dir=Path(args.out), n=args.n, seed=args.seed,
                        truncation=args.truncation, masks=args.masks, batch_size=args.batch_size,
                        device=args.device, command="generate", precision=args.precision, compile=args.compile)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    if args.split:
        return _sample_split(args)
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise FileNotFoundError(f"prompts file not found: {path}")
        prompts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not prompts:
            raise ValueError(f"{path}: holds no prompt")
    else:
        prompts = args.prompt
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    _generate_and_write(args.model, prompts, out_dir=Path(args.out), n=args.n, seed=args.seed,
                        truncation=args.truncation, masks=args.masks, batch_size=args.batch_size,
                        device=args.device, command="sample", precision=args.precision, compile=args.compile)
    return 0


def _sample_split(args: argparse.Namespace) -> int:
    """One image per (image, caption) of a split; image n of the split's caption list draws noise (seed, n),
    so the files do not depend on how many processes share the work."""
    from t2igan.data import DataConfig, load_corpus
    from t2igan.pipeline import T2IPipeline
    from t2igan.training.logs import Progress
    from t2igan.utils import dist
    from t2igan.utils.image import tensor_to_pil

    if not args.data:
        raise ValueError("--split needs --data (the dataset root)")
    if args.captions_per_image is not None and args.captions_per_image < 1:
        raise ValueError(f"--captions-per-image must be at least 1, got {args.captions_per_image}")
    dist.init_from_env(args.device if args.device != "auto" else "cpu")
    pipe = T2IPipeline.from_pretrained(args.model, device=args.device, precision=args.precision,
                                       compile=args.compile)
    corpus = load_corpus(DataConfig(kind=args.kind, root=args.data, vocab=str(Path(args.model) / "vocab.json")))
    k = args.captions_per_image
    items = [(r.key, c, r.captions[c][:pipe.words_num]) for r in corpus.records(args.split)
             for c in range(len(r.captions) if k is None else min(k, len(r.captions))) if r.captions[c]]
    mine = list(dist.shard(len(items)))
    out_dir = Path(args.out)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rank = dist.rank()
    bar = Progress(len(mine), f"sampling {args.split} (rank {rank})", enabled=dist.is_main())
    with open(out_dir / f"manifest.rank{rank}.jsonl", "w", encoding="utf-8") as f:
        for s0 in range(0, len(mine), 256):
            part = mine[s0:s0 + 256]
            tensors, _ = pipe.generate_from_ids([items[i][2] for i in part], part, seed=args.seed,
                                                truncation=args.truncation, batch_size=args.batch_size)
            for i, img in zip(part, tensor_to_pil(tensors)):
                key, cap, ids = items[i]
                name = f"images/{key}_c{cap:02d}.png"
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                img.save(out_dir / name)
                f.write(json.dumps({"index": i, "key": key, "caption_index": cap, "file": name,
                                    "caption": pipe.vocab.decode(ids), "seed": args.seed}) + "\n")
            bar.update(len(part))
    bar.close()
    dist.barrier()
    if dist.is_main():
        rows = []
        for r in range(dist.world_size()):
            path = out_dir / f"manifest.rank{r}.jsonl"
            rows += [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
            path.unlink()
        rows.sort(key=lambda x: x["index"])
        with open(out_dir / "manifest.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(x) + "\n" for x in rows)
        print(f"wrote {len(rows)} images of the {args.split} split to {out_dir / 'images'} "
              f"(manifest.jsonl; {dist.world_size()} process(es))")
    dist.barrier()
    dist.cleanup()
    return 0


# -- quickstart -------------------------------------------------------------------------------------------------
def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="run the whole workflow on the built-in SynthBirds dataset",
                       description="The default workflow on SynthBirds within a time budget: render the dataset and "
                                   "a preview, pretrain DAMSM, train the attribute classifier, train SSA-GAN, sample "
                                   "a captioned grid with mask overlays, evaluate (R-precision, attribute accuracy "
                                   "against its ceiling, FID-SB), and print where everything is.")
    p.add_argument("--out", default=DEFAULT_QUICKSTART_DIR, help="working directory for data and results")
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of the whole workflow")
    p.add_argument("--size", type=int, default=64, choices=(64, 128, 256), help="image side in pixels")
    p.add_argument("--train", type=int, default=10000, help="SynthBirds training images")
    p.add_argument("--test", type=int, default=2000, help="SynthBirds test images")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_quickstart)


QUICKSTART_PROMPTS = ("a small bird with a red crown and blue wings",
                      "a large yellow bird with black wings and a long beak",
                      "this bird has a green breast and a white tail",
                      "a tiny purple bird with an orange beak")


def cmd_quickstart(args: argparse.Namespace) -> int:
    from t2igan.data import DataConfig, load_corpus
    from t2igan.data.synthetic import SynthBirdsSpec, prepare_synthbirds
    from t2igan.evaluation.protocol import EvalConfig
    from t2igan.pipeline import T2IPipeline, evaluate_model
    from t2igan.presets import resolve_config
    from t2igan.training.damsm import DAMSMRunConfig, pretrain_damsm
    from t2igan.training.evaluator import EvaluatorTrainConfig, train_evaluator
    from t2igan.training.trainer import GANRunConfig, train_gan
    from t2igan.utils.image import captioned_grid, mask_strip

    out = Path(args.out)
    data_dir = out / "data" / "synthbirds"
    t0 = time.perf_counter()

    def left() -> float:
        return args.minutes - (time.perf_counter() - t0) / 60

    print(f"[1/7] preparing SynthBirds in {data_dir}", flush=True)
    prepare_synthbirds(data_dir, SynthBirdsSpec(size=args.size, train=args.train, test=args.test,
                                                seed=args.seed))
    corpus = load_corpus(DataConfig(kind="synthbirds", root=str(data_dir), image_size=args.size))
    print("[2/7] writing a preview of the training data", flush=True)
    preview = write_preview(data_dir, out / "synthbirds_preview.png", size=args.size)
    reserve = min(1.5, 0.12 * args.minutes)  # sampling, evaluation and the stages' own final passes
    work = left() - reserve
    if work <= 0.2:
        raise ValueError(f"--minutes {args.minutes} leaves no time for training")
    print(f"[3/7] pretraining DAMSM for at most {0.35 * work:.1f} minutes", flush=True)
    cfg = resolve_config(DAMSMRunConfig, preset="damsm-synthbirds", task="damsm", overrides=[
        f"data.root={data_dir}", f"data.image_size={args.size}", f"image_encoder.input_size={args.size}",
        f"train.max_minutes={0.35 * work}", f"train.device={args.device}", f"train.seed={args.seed}",
        f"train.batch_size={min(48, args.train)}"])
    damsm = pretrain_damsm(cfg, runs_root=out / "runs")
    evaluator_dir = data_dir / "evaluator"
    ev_minutes = 0.15 * work
    print(f"[4/7] training the attribute classifier for at most {ev_minutes:.1f} minutes", flush=True)
    epochs = max(1, min(20, int(ev_minutes * 60 / max(args.train / 600, 0.05))))  # ~600 images/s on 2 cores
    ev = train_evaluator(data_dir, evaluator_dir, EvaluatorTrainConfig(
        epochs=epochs, max_minutes=ev_minutes, device=args.device, seed=args.seed,
        batch_size=min(128, args.train)), overwrite=True)
    # the reserve after GAN training, from this machine's measured speed: the final evaluation runs three
    # networks forward over every test caption, about 8 classifier training images' worth of time each
    # (calibrated on a 1-thread AVX2 CPU, where 2,000 test captions took 2.5 min at 110 classifier images/s)
    rates = [h["train/images_per_s"] for h in ev.get("history", []) if h.get("train/images_per_s")]
    if rates:
        reserve = min(max(1.0, 0.3 + 8 * args.test / max(rates[-1], 1e-3) / 60), 0.3 * args.minutes)
    gan_minutes = max(left() - reserve, 0.1)
    print(f"[5/7] training SSA-GAN for at most {gan_minutes:.1f} minutes", flush=True)
    gcfg = resolve_config(GANRunConfig, preset="ssagan-synthetic", task="gan", overrides=[
        f"data.root={data_dir}", f"data.image_size={args.size}", f"damsm={damsm['encoders']}",
        f"train.max_minutes={gan_minutes}", f"train.device={args.device}", f"train.seed={args.seed}",
        f"train.batch_size={min(24, args.train)}", "train.eval_every=-1", "train.image_every=0"])
    gan = train_gan(gcfg, runs_root=out / "runs")
    model = Path(gan["model"])
    print("[6/7] sampling", flush=True)
    pipe = T2IPipeline.from_pretrained(model, device=args.device)
    res = pipe(list(QUICKSTART_PROMPTS), seed=args.seed, num_images_per_prompt=2)
    samples = out / "samples.png"
    captioned_grid(res.images, res.prompts, cols=4).save(samples)
    masks = out / "masks.png"
    if res.masks is not None:
        mask_strip(res.images[0], [m[0, 0] for m in res.masks]).save(masks)
    print("[7/7] evaluating on the test captions", flush=True)
    ecfg = EvalConfig(metrics=("r_precision", "attributes"), batch_size=100, seed=args.seed,
                      rp_trials=3000 if args.test >= 10 else 100, cache_dir=str(out / "cache"))
    report = evaluate_model(model, out / "evaluation", ecfg, evaluator=str(evaluator_dir), device=args.device)
    m = json.loads((out / "evaluation" / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    s = corpus.summary()
    print()
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"  dataset:       {data_dir}  ({s['train_images']} train images of {s['train_classes']} species, "
          f"{s['test_images']} test images of {s['test_classes']} unseen species, vocabulary of "
          f"{s['vocab_size']} words)")
    print(f"  preview:       {preview}")
    print(f"  DAMSM run:     {damsm['run_dir']} ({damsm['epoch']} epochs, {damsm['stopped']})")
    if "val/r_precision" in damsm:
        print(f"  DAMSM R-precision of real test images: {damsm['val/r_precision']:.3f} "
              f"± {damsm['val/r_precision_std']:.3f}")
    print(f"  classifier:    {evaluator_dir} (ceiling attribute accuracy {ev['ceiling_attr_acc']:.3f})")
    if ev["ceiling_attr_acc"] < 0.9:
        print(f"                 (a short budget: it reaches about 0.99 in 20 epochs, `t2igan train-evaluator "
              f"--data {data_dir} --overwrite`, then `t2igan evaluate` scores against it)")
    print(f"  SSA-GAN run:   {gan['run_dir']} ({gan['step']} steps, {gan['stopped']})")
    print(f"  model:         {model}  (t2igan sample --model {model} --prompt \"...\" --masks --out DIR)")
    print(f"  samples:       {samples}" + (f", masks: {masks}" if res.masks is not None else ""))
    print(f"  evaluation:    {report}")
    print(f"  R-precision of generated images:  {m['r_precision']:.3f} ± {m['r_precision_std']:.3f}")
    print(f"  attribute accuracy:               {m['attr_acc']:.3f} (ceiling {m.get('ceiling_attr_acc', float('nan')):.3f})")
    print(f"  FID-SB:                           {m['fid_sb']:.2f}")
    return 0


# -- entry point ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t2igan", description="Text-to-image GANs: SSA-GAN and its lineage.")
    parser.add_argument("--version", action="version", version=f"t2igan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_prepare(sub)
    _add_pretrain_damsm(sub)
    _add_train(sub)
    _add_export(sub)
    _add_evaluate(sub)
    _add_train_evaluator(sub)
    _add_convert(sub)
    _add_generate(sub)
    _add_sample(sub)
    _add_quickstart(sub)
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="t2igan: %(levelname)s: %(message)s" if args.verbose else "t2igan: %(message)s")
    from t2igan.data.base import DataError
    from t2igan.models.base import ModelLoadError
    from t2igan.text.vocab import PromptError
    from t2igan.training.checkpoint import ResumeError

    try:
        return int(args.func(args) or 0)
    except (DataError, FileNotFoundError, FileExistsError, ValueError, ModelLoadError, ResumeError,
            PromptError) as exc:
        print(f"t2igan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"t2igan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
