"""DAMSM pretraining: the text and image encoders trained jointly on the DAMSM loss (AttnGAN Sec. 3.3).

Official defaults (AttnGAN ``pretrain_DAMSM.py``): Adam betas (0.5, 0.999), learning rate 0.002 decayed x0.98
per epoch while above 0.0002, LSTM gradient norm clipped at 0.25, gamma1=4, gamma2=5, gamma3=10. Unlike the
official script, the optimizer is created once and its state is kept across epochs and in snapshots.

Each epoch ends with a validation pass on the test split (DAMSM loss, and R-precision of the real test images
against their captions) and a figure of word-attention maps over a few validation images.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from t2igan.config import ConfigBase, to_dict
from t2igan.data.base import DataConfig, TextImageDataset, load_corpus
from t2igan.data.collate import EpochSampler, batch_to, make_loader
from t2igan.evaluation.r_precision import r_precision
from t2igan.losses.damsm import damsm_loss, word_region_attention
from t2igan.models.base import load_state_dict_file, load_state_strict, save_state_dict_file
from t2igan.models.damsm import ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig
from t2igan.text.vocab import Vocabulary
from t2igan.training.checkpoint import (
    ResumeError,
    SnapshotManager,
    StopFlag,
    capture_rng_state,
    load_trainer_state,
    make_run_dir,
    record_resume,
    restore_rng_state,
    save_trainer_state,
)
from t2igan.training.logs import Progress, RunLogger, log_long_captions
from t2igan.utils.device import resolve_amp, resolve_device
from t2igan.utils.io import read_json, write_json_atomic

__all__ = ["DAMSMTrainConfig", "DAMSMRunConfig", "DAMSMEncoders", "EncodersError", "load_encoders", "pretrain_damsm",
           "export_encoders", "encode_split"]

log = logging.getLogger("t2igan.training")


@dataclass
class DAMSMTrainConfig(ConfigBase):
    epochs: int = 600  # official: 600 (birds)
    batch_size: int = 48  # official: 48
    lr: float = 0.002  # official ENCODER_LR
    lr_decay: float = 0.98  # per epoch, while lr > lr_min
    lr_min: float = 0.0002
    betas: tuple[float, float] = (0.5, 0.999)
    rnn_grad_clip: float = 0.25  # gradient-norm clip of the text encoder
    gamma1: float = 4.0
    gamma2: float = 5.0
    gamma3: float = 10.0
    max_minutes: float | None = None  # stop (with a snapshot and the export) after this wall-clock budget
    snapshot_every: int = 1  # epochs between snapshots
    keep_snapshots: int = 2
    val_every: int = 1  # epochs between validations (the last epoch, and a stop, always validate)
    rp_trials: int = 3000  # R-precision trials per validation (the paper protocol uses 30000)
    rp_candidates: int = 100
    attention_examples: int = 4  # validation captions drawn in the word-attention figure
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bf16 autocast for the encoders where the device has native bf16, else fp32 (loss in fp32)
    # train the image encoder only, against init_from's text encoder (fixed, in eval mode: no dropout), e.g. to
    # refit the image encoder that a GAN's DAMSM loss uses without changing the text codes the GAN was trained on
    freeze_text: bool = False
    channels_last: bool = False  # channels_last memory format for the image encoder and its input images
    seed: int = 0
    max_nonfinite: int = 5  # consecutive non-finite losses (steps skipped) before the run stops
    progress: bool = True
    tensorboard: bool = True


@dataclass
class DAMSMRunConfig(ConfigBase):
    name: str = "damsm"
    data: DataConfig = field(default_factory=DataConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    train: DAMSMTrainConfig = field(default_factory=DAMSMTrainConfig)
    trunk_weights: str | None = None  # ImageNet Inception-v3 weights (default: torchvision's cache, if present)
    # start from these encoders: a directory with text_encoder/, image_encoder/ and vocab.json (RUN/encoders, the
    # output of `t2igan convert damsm`, or a model directory). Their architecture and vocabulary replace the run's
    # text_encoder / image_encoder sections and data.vocab.
    init_from: str | None = None


def _lr_at(cfg: DAMSMTrainConfig, epoch: int) -> float:
    lr = cfg.lr
    for _ in range(epoch):
        if lr > cfg.lr_min:
            lr *= cfg.lr_decay
    return lr


class EncodersError(ValueError):
    """An encoders directory whose parts do not belong together (see :func:`load_encoders`)."""


@dataclass
class DAMSMEncoders:
    """A pretrained DAMSM as a directory holds it: both encoders and the vocabulary they embed."""

    text_encoder: TextEncoder
    image_encoder: ImageEncoder
    vocab: Vocabulary
    vocab_path: Path


def load_encoders(path: str | Path, option: str = "damsm") -> DAMSMEncoders:
    """Load ``text_encoder/``, ``image_encoder/`` and ``vocab.json`` from ``path`` (``RUN/encoders``, the output of
    ``t2igan convert damsm`` or a model directory) and check that they belong together. ``option`` names the
    setting that gave the path in the messages. A missing part is a FileNotFoundError, parts that do not belong
    together an :class:`EncodersError`; a corrupt file raises its loader's error.
    """
    d = Path(path)
    for part in ("text_encoder", "image_encoder", "vocab.json"):
        if not (d / part).exists():
            raise FileNotFoundError(f"{d / part} not found: {option}={d} must hold text_encoder/, image_encoder/ "
                                    "and vocab.json (`t2igan pretrain-damsm` writes them to RUN/encoders)")
    te = TextEncoder.from_pretrained(d / "text_encoder")
    ie = ImageEncoder.from_pretrained(d / "image_encoder")
    vocab = Vocabulary.load(d / "vocab.json")
    if te.config.vocab_size != len(vocab):
        raise EncodersError(f"{d / 'vocab.json'} has {len(vocab)} words but the text encoder embeds "
                            f"{te.config.vocab_size}")
    if ie.config.embed_dim != te.embed_dim:
        raise EncodersError(f"{d}: image encoder embeds in {ie.config.embed_dim} dims, text encoder in {te.embed_dim}")
    return DAMSMEncoders(te, ie, vocab, d / "vocab.json")


def _apply_init_from(config: DAMSMRunConfig) -> tuple[DAMSMRunConfig, DAMSMEncoders | None]:
    """The run config with ``init_from``'s encoder architectures and vocabulary, and those encoders (the config
    unchanged and None without ``init_from``)."""
    if not config.init_from:
        if config.train.freeze_text:
            raise ValueError("train.freeze_text=true needs init_from=DIR: a frozen text encoder must be a trained "
                             "one (e.g. RUN/encoders of an earlier `t2igan pretrain-damsm` run, or a model dir)")
        return config, None
    init = load_encoders(config.init_from, option="init_from")
    if config.data.vocab and Vocabulary.load(config.data.vocab) != init.vocab:
        raise ValueError(f"data.vocab={config.data.vocab} is not the vocabulary of init_from={config.init_from} "
                         f"({init.vocab_path}); leave data.vocab unset to encode the captions with the encoders' own")
    text_cfg, img_cfg = init.text_encoder.config, init.image_encoder.config
    for name, ours, theirs in (("text_encoder", config.text_encoder, text_cfg),
                               ("image_encoder", config.image_encoder, img_cfg)):
        mine = {k: v for k, v in to_dict(ours).items() if k != "vocab_size"}
        if mine != {k: v for k, v in to_dict(theirs).items() if k != "vocab_size"}:
            log.info("init_from: %s takes the architecture of %s (%s)", name, Path(config.init_from) / name,
                     to_dict(theirs))
    return config.replace(text_encoder=text_cfg, image_encoder=img_cfg,
                          data=config.data.replace(vocab=str(init.vocab_path))), init


@contextlib.contextmanager
def _eval_mode(*modules: torch.nn.Module):
    """Switch ``modules`` to eval mode for the block, then back to the mode each had (a frozen one stays in eval)."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, was):
            m.train(mode)


def _text_amp(amp: bool, device: torch.device) -> bool:
    """Whether the LSTM text encoder runs under bf16 autocast: on CUDA only. On the CPU its bf16 LSTM is slower
    than fp32 (SynthBirds batch of 48, ~27 words, forward + backward: 68 against 48 ms on 2 cores)."""
    return amp and device.type == "cuda"


def _encode(text_enc: TextEncoder, img_enc: ImageEncoder, batch: dict[str, Any], amp: bool,
            device: torch.device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_text_amp(amp, device)):
        words, sent = text_enc(batch["captions"], batch["lengths"])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        regions, code = img_enc(batch["images"])
    return words.float(), sent.float(), regions.float(), code.float()


@torch.no_grad()
def encode_split(text_enc: TextEncoder, img_enc: ImageEncoder, dataset: TextImageDataset, batch_size: int,
                 device: torch.device, amp: bool = False) -> dict[str, torch.Tensor]:
    """Global image codes of every image and sentence codes of every caption of a split (eval mode).

    Returns ``img_codes`` [N, D], ``image_class`` [N], ``sent_codes`` [M, D], ``caption_image`` [M] (the image
    each caption belongs to) and ``caption_class`` [M].
    """
    img_ds = dataset.with_mode(caption_mode="first")
    cap_ds = dataset.with_mode(caption_mode="all", load_images=False)
    codes, sents, owners = [], [], []
    with _eval_mode(text_enc, img_enc):
        for b in make_loader(img_ds, batch_size, shuffle=False, drop_last=False):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                codes.append(img_enc(b["images"].to(device))[1].float().cpu())
        for b in make_loader(cap_ds, 512, shuffle=False, drop_last=False):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_text_amp(amp, device)):
                sents.append(text_enc(b["captions"].to(device), b["lengths"].to(device))[1].float().cpu())
            owners.append(b["indices"])
    image_class = torch.as_tensor([r.class_id for r in dataset.records])
    caption_image = torch.cat(owners)
    return {"img_codes": torch.cat(codes), "image_class": image_class, "sent_codes": torch.cat(sents),
            "caption_image": caption_image, "caption_class": image_class[caption_image]}


def real_r_precision(enc: dict[str, torch.Tensor], *, trials: int, candidates: int, seed: int = 0):
    """R-precision of real images against their own captions: one query per (image, caption) pair."""
    m = enc["sent_codes"].shape[0]
    owner = enc["caption_image"]
    folds = 10 if trials % 10 == 0 else 1
    return r_precision(enc["img_codes"][owner], torch.arange(m), enc["sent_codes"], enc["caption_class"],
                       enc["caption_class"], candidates=candidates, trials=trials, folds=folds, seed=seed)


def export_encoders(text_enc: TextEncoder, img_enc: ImageEncoder, vocab, out_dir: Path) -> Path:
    """Write ``text_encoder/``, ``image_encoder/`` and ``vocab.json`` (the layout ``convert damsm`` writes)."""
    out_dir = Path(out_dir)
    text_enc.save_pretrained(out_dir / "text_encoder")
    img_enc.save_pretrained(out_dir / "image_encoder")
    vocab.save(out_dir / "vocab.json")
    return out_dir


def _attention_figure(text_enc, img_enc, batch, vocab, gamma1: float, device, n: int):
    """AttnGAN's figure: each validation image, then the attention map of each word over it."""
    from PIL import Image, ImageDraw, ImageFont

    from t2igan.utils.image import tensor_to_pil

    with torch.no_grad(), _eval_mode(text_enc, img_enc):
        b = batch_to({k: (v[:n] if torch.is_tensor(v) else v[:n]) for k, v in batch.items()}, device)
        words, _ = text_enc(b["captions"], b["lengths"])
        regions, _ = img_enc(b["images"])
        _, attn = word_region_attention(words.float(), regions.float(), b["lengths"], gamma1)
    imgs = tensor_to_pil(b["images"].cpu())
    size = 96
    cols = 1 + int(b["lengths"].max())
    font = ImageFont.load_default(size=11)
    canvas = Image.new("RGB", (cols * size, len(imgs) * (size + 16)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, img in enumerate(imgs):
        y = r * (size + 16)
        base = img.resize((size, size), Image.BILINEAR)
        canvas.paste(base, (0, y))
        L = int(b["lengths"][r])
        maps = F.interpolate(attn[r:r + 1, :L].float().cpu(), size=(size, size), mode="bilinear",
                             align_corners=False)[0]
        for t in range(L):
            m = maps[t]
            m = (m - m.min()) / (m.max() - m.min() + 1e-8)
            heat = np.zeros((size, size, 3), dtype=np.float32)
            heat[..., 0] = 255 * m.numpy()
            heat[..., 1] = 255 * (1 - (m.numpy() - 0.5).__abs__() * 2) * 0.6
            blend = 0.45 * np.asarray(base, dtype=np.float32) + 0.55 * heat
            canvas.paste(Image.fromarray(blend.clip(0, 255).astype(np.uint8)), ((t + 1) * size, y))
            draw.text(((t + 1) * size + 2, y + size + 1), vocab.word(int(b["captions"][r, t])), fill="black",
                      font=font)
    return canvas


def pretrain_damsm(config: DAMSMRunConfig, *, runs_root: str | Path = "runs", resume: str | Path | None = None,
                   max_steps: int | None = None) -> dict[str, Any]:
    """Pretrain DAMSM; returns a summary with the run directory, the export directory and the last metrics.

    ``resume`` continues a run directory from its latest snapshot (optimizer, epoch, step, RNG included).
    ``max_steps`` stops after that many optimizer steps in this call (for tests and smoke runs).
    """
    config, init = _apply_init_from(config)
    device = resolve_device(config.train.device)
    cfg = config.train.replace(amp=resolve_amp(config.train.amp, device, "train.amp") == "bf16")
    if cfg.val_every < 1:
        raise ValueError(f"train.val_every must be at least 1 (epochs between validations), got {cfg.val_every}")
    torch.manual_seed(cfg.seed)
    corpus = load_corpus(config.data)
    vocab = corpus.vocab
    text_cfg = config.text_encoder.replace(vocab_size=len(vocab))
    text_enc = TextEncoder(text_cfg).to(device)
    img_enc = ImageEncoder(config.image_encoder)
    trunk_note = "light backbone, trained from scratch"
    if config.image_encoder.backbone == "inception_v3":
        from t2igan.models.damsm import load_inception_trunk

        try:
            used = load_inception_trunk(img_enc, config.trunk_weights)
            trunk_note = f"Inception-v3 trunk: ImageNet weights from {used}, frozen"
        except FileNotFoundError as exc:
            if config.trunk_weights:
                raise
            trunk_note = "Inception-v3 trunk: no ImageNet weights found, trained from scratch"
            img_enc = ImageEncoder(config.image_encoder.replace(freeze_trunk=False))
            log.warning("%s (%s)", trunk_note, exc)
    img_enc = img_enc.to(device)
    if cfg.channels_last:
        img_enc = img_enc.to(memory_format=torch.channels_last)
    if init is not None and resume is None:
        load_state_strict(text_enc, init.text_encoder.state_dict(), source=config.init_from)
        load_state_strict(img_enc, init.image_encoder.state_dict(), source=config.init_from)
        trunk_note = f"encoders from {config.init_from}"
    if cfg.freeze_text:
        text_enc.requires_grad_(False)
        trunk_note += "; text encoder frozen (eval mode), the image encoder trains alone"
    log.info("%s", trunk_note)
    params = [p for p in text_enc.parameters() if p.requires_grad] + \
             [p for p in img_enc.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)

    train_ds = TextImageDataset.from_config(config.data, "train", corpus)
    test_ds = TextImageDataset.from_config(config.data, "test", corpus, train=False)
    log_long_captions(train_ds, test_ds)
    if len(train_ds) < cfg.batch_size:
        raise ValueError(f"the training split has {len(train_ds)} items, fewer than batch_size={cfg.batch_size}")

    epoch, step, start_batch = 0, 0, 0
    if resume is not None:
        run_dir = Path(resume)
        snap = SnapshotManager(run_dir).latest()
        if snap is None:
            raise ResumeError(f"{run_dir} has no snapshot to resume from")
        saved = read_json(run_dir / "run_config.json")
        if saved.get("data", {}).get("root") != config.data.root:
            log.warning("resuming %s with data root %s (the run used %s)", run_dir, config.data.root,
                        saved.get("data", {}).get("root"))
        load_state_strict(text_enc, load_state_dict_file(snap / "text_encoder.safetensors"), source=str(snap))
        load_state_strict(img_enc, load_state_dict_file(snap / "image_encoder.safetensors"), source=str(snap))
        state = load_trainer_state(snap / "trainer_state.pt")
        opt.load_state_dict(state["optimizer"])
        epoch, step, start_batch = int(state["epoch"]), int(state["step"]), int(state.get("batch", 0))
        restore_rng_state(state["rng"])
        log.info("resumed %s at epoch %d, step %d", snap, epoch, step)
        record_resume(run_dir, saved, to_dict(config.replace(text_encoder=text_cfg)), step=step)
    else:
        run_dir = make_run_dir(runs_root, config.name)
        write_json_atomic(run_dir / "run_config.json", to_dict(config.replace(text_encoder=text_cfg)))
    snaps = SnapshotManager(run_dir, keep=cfg.keep_snapshots)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)
    (run_dir / "attention").mkdir(exist_ok=True)

    def snapshot(ep: int, batch_in_epoch: int = 0) -> None:
        def write(tmp: Path) -> None:
            save_state_dict_file(text_enc.state_dict(), tmp / "text_encoder.safetensors")
            save_state_dict_file(img_enc.state_dict(), tmp / "image_encoder.safetensors")
            save_trainer_state(tmp / "trainer_state.pt", {"optimizer": opt.state_dict(), "epoch": ep,
                                                          "batch": batch_in_epoch, "step": step,
                                                          "rng": capture_rng_state()})
        snaps.save(f"step-{step:08d}", write)

    t_start = time.monotonic()
    deadline = t_start + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    sampler = EpochSampler(len(train_ds), batch_size=cfg.batch_size, seed=cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch()
    metrics: dict[str, float] = {}
    steps_this_call = 0
    nonfinite = skipped_total = 0
    stopped = ""
    fixed_val = None
    with StopFlag() as flag:
        while epoch < cfg.epochs and not stopped:
            lr = _lr_at(cfg, epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            train_ds.set_epoch(epoch)
            sampler.set_epoch(epoch, start_batch)
            loader = make_loader(train_ds, cfg.batch_size, shuffle=False, drop_last=True, sampler=sampler,
                                 num_workers=config.data.num_workers,
                                 generator=torch.Generator().manual_seed(cfg.seed + epoch))
            text_enc.train(not cfg.freeze_text)
            img_enc.train()
            bar = Progress(steps_per_epoch, f"DAMSM epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress,
                           initial=start_batch)
            sums = {"w_loss": 0.0, "s_loss": 0.0}
            t0 = time.monotonic()
            n_batches = first = start_batch
            start_batch = 0
            for batch in loader:
                batch = batch_to(batch, device, cfg.channels_last)
                words, sent, regions, code = _encode(text_enc, img_enc, batch, cfg.amp, device)
                out = damsm_loss(regions, words, code, sent, batch["lengths"], batch["class_ids"],
                                 gamma1=cfg.gamma1, gamma2=cfg.gamma2, gamma3=cfg.gamma3)
                opt.zero_grad(set_to_none=True)
                n_batches += 1  # batches consumed from this epoch (a skipped one too)
                if not torch.isfinite(out.total):  # skip the step; stop after too many in a row
                    nonfinite += 1
                    skipped_total += 1
                    log.warning("non-finite DAMSM loss at step %d (%d in a row): step skipped", step, nonfinite)
                    if nonfinite >= cfg.max_nonfinite:
                        stopped = "non-finite loss"
                        break
                    continue
                nonfinite = 0
                out.total.backward()
                if not cfg.freeze_text:
                    torch.nn.utils.clip_grad_norm_(text_enc.parameters(), cfg.rnn_grad_clip)
                opt.step()
                step += 1
                steps_this_call += 1
                w = float((out.w_loss0 + out.w_loss1).detach())
                s = float((out.s_loss0 + out.s_loss1).detach())
                sums["w_loss"] += w
                sums["s_loss"] += s
                bar.update(1, w_loss=w, s_loss=s)
                if step % 50 == 0:
                    logger.scalars(step, {"train/w_loss": w, "train/s_loss": s, "train/lr": lr}, epoch=epoch)
                if flag.stop or time.monotonic() > deadline or (max_steps and steps_this_call >= max_steps):
                    stopped = ("signal" if flag.stop else "time budget" if time.monotonic() > deadline
                               else "max_steps")
                    break
            bar.close()
            epoch_done = n_batches == steps_per_epoch
            if epoch_done:
                epoch += 1
            # the snapshot comes before validation, which must not change what a resumed run continues with
            if stopped or (epoch_done and (epoch % cfg.snapshot_every == 0 or epoch == cfg.epochs)):
                snapshot(epoch, 0 if epoch_done else n_batches)
            dt = time.monotonic() - t0
            done = n_batches - first
            metrics = {"train/w_loss": sums["w_loss"] / max(done, 1),
                       "train/s_loss": sums["s_loss"] / max(done, 1),
                       "train/images_per_s": done * cfg.batch_size / max(dt, 1e-9)}
            if stopped or (epoch_done and (epoch % cfg.val_every == 0 or epoch == cfg.epochs)):
                rng = capture_rng_state()
                val, fixed_val = _validate(text_enc, img_enc, test_ds, cfg, device, fixed_val)
                metrics.update(val)
                logger.scalars(step, metrics, epoch=epoch)
                if fixed_val is not None and cfg.attention_examples > 0:
                    fig = _attention_figure(text_enc, img_enc, fixed_val, vocab, cfg.gamma1, device,
                                            cfg.attention_examples)
                    fig.save(run_dir / "attention" / f"epoch_{epoch:04d}.png")
                    logger.image("val/attention", fig, step)
                restore_rng_state(rng)
                where = (f"epoch {epoch}" if epoch_done else  # a partial epoch: the one it stopped in
                         f"epoch {epoch + 1} (stopped by {stopped} after {n_batches} of {steps_per_epoch} batches)")
                log.info("%s: %s", where, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            elif epoch_done:
                logger.scalars(step, metrics, epoch=epoch)
    export = export_encoders(text_enc, img_enc, vocab, run_dir / "encoders")
    logger.close()
    summary = {"run_dir": str(run_dir), "encoders": str(export), "epoch": epoch, "step": step,
               "stopped": stopped or "done", "trunk": trunk_note, "skipped_steps": skipped_total,
               "minutes": (time.monotonic() - t_start) / 60, **metrics}
    write_json_atomic(run_dir / "summary.json", summary)
    return summary


@torch.no_grad()
def _validate(text_enc, img_enc, test_ds: TextImageDataset, cfg: DAMSMTrainConfig, device, fixed):
    loader = make_loader(test_ds, cfg.batch_size, shuffle=False, drop_last=len(test_ds) >= cfg.batch_size)
    w_sum = s_sum = 0.0
    n = 0
    with _eval_mode(text_enc, img_enc):
        for batch in loader:
            if fixed is None:
                fixed = batch
            b = batch_to(batch, device)
            words, sent, regions, code = _encode(text_enc, img_enc, b, cfg.amp, device)
            if words.shape[0] < 2:
                continue
            out = damsm_loss(regions, words, code, sent, b["lengths"], b["class_ids"], gamma1=cfg.gamma1,
                             gamma2=cfg.gamma2, gamma3=cfg.gamma3)
            w_sum += float(out.w_loss0 + out.w_loss1)
            s_sum += float(out.s_loss0 + out.s_loss1)
            n += 1
    enc = encode_split(text_enc, img_enc, test_ds, cfg.batch_size, device, cfg.amp)
    rp = real_r_precision(enc, trials=cfg.rp_trials, candidates=cfg.rp_candidates)
    return {"val/w_loss": w_sum / max(n, 1), "val/s_loss": s_sum / max(n, 1), "val/r_precision": rp.mean,
            "val/r_precision_std": rp.std}, fixed
