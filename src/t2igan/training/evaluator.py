"""Training the SynthBirds attribute classifier that judges generated images (``t2igan train-evaluator``).

The classifier (:class:`t2igan.evaluation.attributes.AttributeClassifier`) learns every attribute of the real
*training* images; its accuracy on the real *test* images (unseen species: breast x wing colour pairs never
seen in training) is the ceiling that generated images are compared with. SynthBirds is small (10k images at
64 px), so all images are decoded once into a uint8 tensor and augmented as tensors: with the defaults an
epoch takes about 12 s on two CPU cores with bf16 autocast, and the whole run about 4 minutes (measured on
``/work/data/synthbirds``: ceiling 0.991; every attribute >= 0.998 except beak colour 0.970 and beak length
0.961, which are mostly birds whose beak the renderer draws partly outside the frame).

Augmentation makes the classifier robust to GAN-like images without changing what it must read off them:
small zoom crops, translations and rotations, horizontal flips, mild brightness/contrast/saturation changes,
blur and noise. There is deliberately no hue jitter: colours are the labels.

The output dir holds the classifier (``config.json`` with the dataset fingerprint + ``model.safetensors``),
``evaluator.json`` (fingerprint, ceiling accuracies, per-epoch history, time, the training config), the
FID-SB reference statistics of the test split and ``log.jsonl``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from t2igan import __version__
from t2igan.config import ConfigBase, to_dict
from t2igan.data.base import DataConfig, load_corpus
from t2igan.data.synthetic import read_attributes
from t2igan.evaluation.attributes import (
    EVALUATOR_FILE,
    FID_SB_EXTRACTOR,
    AttributeClassifier,
    AttributeClassifierConfig,
    CeilingResult,
    ceiling_accuracy,
    load_synthbirds_split,
    reference_statistics,
    synthbirds_fingerprint,
)
from t2igan.training.logs import Progress, RunLogger
from t2igan.utils.device import resolve_amp, resolve_device
from t2igan.utils.io import write_json_atomic

__all__ = ["AugmentConfig", "EvaluatorTrainConfig", "augment_batch", "train_evaluator"]

log = logging.getLogger("t2igan.training")


@dataclass
class AugmentConfig(ConfigBase):
    """Light, hue-preserving augmentation (applied per image, on tensors)."""

    min_scale: float = 0.85  # zoom crop: side of the sampled window, as a fraction of the image (1 = none)
    max_shift: float = 0.06  # extra translation, fraction of the image side
    rotate_degrees: float = 8.0  # uniform in +-
    flip: bool = True  # horizontal flip with probability 1/2
    brightness: float = 0.1  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.1  # scale around the image mean by U(1 - c, 1 + c)
    saturation: float = 0.1  # scale the distance from grey by U(1 - s, 1 + s) (keeps the hue)
    blur_prob: float = 0.15  # share of images blurred with a Gaussian of sigma U(0.3, max_blur_sigma)
    max_blur_sigma: float = 0.7  # more washes out 3-pixel beaks
    noise: float = 0.03  # Gaussian noise of std U(0, noise), in [-1, 1] units


@dataclass
class EvaluatorTrainConfig(ConfigBase):
    epochs: int = 20  # beak colour (a 3-pixel part) is the last attribute to converge
    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak learning rate (linear warm-up, then cosine to zero)
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    amp: bool = True  # bf16 autocast where the device has native bf16 (AVX-512 CPUs, GPUs), else fp32
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int | None = None  # CPU threads (None: torch's default); 1 helps on a busy machine
    channels_last: bool = True  # NHWC activations: faster convolutions on CPUs and GPUs
    # stop (and still evaluate and save) after this wall-clock budget; the learning rate then anneals by the
    # budget where it is shorter than the epochs (so the run does not stop at a high learning rate)
    max_minutes: float | None = None
    eval_every: int = 1  # epochs between test-set evaluations (the last epoch is always evaluated)
    progress: bool = True
    model: AttributeClassifierConfig = field(default_factory=AttributeClassifierConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs} and "
                             f"{self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


# -- augmentation --------------------------------------------------------------------------------------------
def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (5x5 kernel, reflect padding) with standard deviations sigma [B] in pixels."""
    b, c, h, w = x.shape
    t = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)  # [B, 5]
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, dim=0)[:, None]  # [B*C, 1, 5, 5]
    y = F.conv2d(F.pad(x.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="reflect"), k2, groups=b * c)
    return y.reshape(b, c, h, w)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment float images [B, 3, H, W] in [-1, 1]; every random draw comes from ``generator`` (CPU)."""
    b = images.shape[0]
    dev = images.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (hi - lo) + lo).to(dev)

    # geometry: one affine sampling grid per image (zoom, shift, rotation, flip)
    scale = u(cfg.min_scale, 1.0)
    ang = u(-cfg.rotate_degrees, cfg.rotate_degrees) * (math.pi / 180)
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b, device=dev)
    tx = u(-1, 1) * ((1 - scale) + 2 * cfg.max_shift)
    ty = u(-1, 1) * ((1 - scale) + 2 * cfg.max_shift)
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # photometric, hue-preserving, in [0, 1]
    x = (x + 1) / 2
    x = x * u(1 - cfg.brightness, 1 + cfg.brightness)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(1 - cfg.contrast, 1 + cfg.contrast)[:, None, None, None] + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = grey + (x - grey) * u(1 - cfg.saturation, 1 + cfg.saturation)[:, None, None, None]
    if cfg.blur_prob > 0:
        picked = (u(0, 1) < cfg.blur_prob).nonzero().flatten()
        sigma = u(0.3, cfg.max_blur_sigma)  # drawn for every image: the stream does not depend on the picks
        if picked.numel():
            x[picked] = _blur(x[picked], sigma[picked])
    x = x.clamp(0, 1) * 2 - 1
    if cfg.noise > 0:
        std = u(0, cfg.noise)[:, None, None, None]
        x = x + torch.randn(x.shape, generator=generator).to(dev) * std
    return x.clamp(-1, 1)


# -- training ------------------------------------------------------------------------------------------------
def _spent(start: float, deadline: float) -> float:
    """The part of the wall-clock budget from ``start`` to ``deadline`` already used (0 without a budget)."""
    if not math.isfinite(deadline):
        return 0.0
    return (time.monotonic() - start) / max(deadline - start, 1e-9)


def _lr_factor(step: int, warmup: int, total: int, time_frac: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine to zero at ``total``. ``time_frac`` (the part of a
    wall-clock budget spent) moves the schedule on when it is further along than the steps, so that a run cut by
    its budget ends annealed instead of at a high learning rate."""
    frac = max(step / max(1, total), min(1.0, time_frac))
    w = warmup / max(1, total)
    if frac < w:
        return max(step + 1, frac * total) / max(1, warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - w) / max(1e-9, 1 - w))))


_SHOWN = ("test/ceiling_attr_acc", "test/ceiling_attr_acc_macro", "test/real_attr_acc")


def _scalars(ceiling: CeilingResult) -> dict[str, float]:
    return {f"test/{k}": float(v) for k, v in ceiling.as_dict().items()
            if "count" not in k and k != "ceiling_images"}


def train_evaluator(data_root: str | Path, out_dir: str | Path, config: EvaluatorTrainConfig | None = None, *,
                    overwrite: bool = False, max_steps: int | None = None) -> dict[str, Any]:
    """Train the attribute classifier on a SynthBirds dataset's real training images; save it to ``out_dir``.

    Returns a summary: out_dir, fingerprint, the ceiling accuracies on the real test images (mention-weighted
    overall ``ceiling_attr_acc`` and per attribute, and plain per-image ``real_attr_acc*``), epochs, steps,
    minutes and why training stopped. ``out_dir`` must be empty or missing unless ``overwrite``.
    ``max_steps`` stops after that many optimizer steps (for tests and smoke runs).
    """
    cfg = config if config is not None else EvaluatorTrainConfig()
    data_root, out_dir = Path(data_root), Path(out_dir)
    if not (data_root / "attributes.jsonl").is_file():
        raise FileNotFoundError(f"{data_root / 'attributes.jsonl'} not found: train-evaluator needs a "
                                "SynthBirds dataset (t2igan prepare synthetic), whose attributes.jsonl holds "
                                "the labels")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; choose another output directory or pass "
                              "overwrite=True (--overwrite)")
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _train(data_root, out_dir, cfg, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(data_root: Path, out_dir: Path, cfg: EvaluatorTrainConfig, max_steps: int | None
           ) -> dict[str, Any]:
    t_start = time.monotonic()
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device, "amp") == "bf16"
    torch.manual_seed(cfg.seed)
    fingerprint = synthbirds_fingerprint(data_root)
    mcfg = cfg.model.replace(data_fingerprint=fingerprint)
    records = read_attributes(data_root)
    corpus = load_corpus(DataConfig(kind="synthbirds", root=str(data_root), image_size=mcfg.image_size))
    train = load_synthbirds_split(data_root, "train", mcfg.image_size, mcfg.attributes, records, corpus)
    test = load_synthbirds_split(data_root, "test", mcfg.image_size, mcfg.attributes, records, corpus)
    del records, corpus
    log.info("attribute classifier: %d train / %d test images of %s (fingerprint %s), loaded in %.1f s",
             len(train), len(test), data_root, fingerprint, time.monotonic() - t_start)

    model = AttributeClassifier(mcfg).to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    bs = min(cfg.batch_size, len(train))
    steps_per_epoch = len(train) // bs
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps // 2)
    names = list(mcfg.attributes)
    labels = torch.stack([train.labels[a] for a in names], dim=1)  # [N, A]
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [out_dir / "log.jsonl", *out_dir.glob(f"synthbirds-*-{FID_SB_EXTRACTOR}-*.npz")]:
        old.unlink(missing_ok=True)  # a previous run's log and FID-SB caches (overwrite=True)
    logger = RunLogger(out_dir, tensorboard=False)
    deadline = t_start + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    t_train = time.monotonic()
    step, epoch, stopped = 0, 0, ""
    history: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    ceiling: CeilingResult | None = None
    try:
        while epoch < cfg.epochs and not stopped:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            order = torch.randperm(len(train), generator=g)
            model.train()
            bar = Progress(steps_per_epoch, f"evaluator epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress)
            loss_sum, t0 = 0.0, time.monotonic()
            done = 0
            for k in range(steps_per_epoch):
                idx = order[k * bs:(k + 1) * bs]
                x = train.images[idx].to(device).float().div_(127.5).sub_(1.0)
                x = augment_batch(x, cfg.augment, g).contiguous(memory_format=fmt)
                y = labels[idx].to(device)
                for grp in opt.param_groups:
                    grp["lr"] = cfg.lr * _lr_factor(step, warmup, total_steps, _spent(t_train, deadline))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(x)
                loss = sum(F.cross_entropy(logits[a].float(), y[:, j], label_smoothing=cfg.label_smoothing)
                           for j, a in enumerate(names)) / len(names)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                done += 1
                loss_sum += float(loss.detach())
                bar.update(1, loss=float(loss.detach()))
                if time.monotonic() > deadline:
                    stopped = "time budget"
                elif max_steps is not None and step >= max_steps:
                    stopped = "max_steps"
                if stopped:
                    break
            bar.close()
            if done == steps_per_epoch:
                epoch += 1
            metrics = {"train/loss": loss_sum / max(done, 1),
                       "train/images_per_s": done * bs / max(time.monotonic() - t0, 1e-9)}
            last = stopped or epoch == cfg.epochs
            if last:  # the final evaluation, in float32 and the layout a loaded model has, is the ceiling
                model = model.to(memory_format=torch.contiguous_format)
                ceiling = ceiling_accuracy(model, data=test, batch_size=256, device=device)
                metrics.update(_scalars(ceiling))
            elif epoch % cfg.eval_every == 0:
                metrics.update(_scalars(ceiling_accuracy(model, data=test, batch_size=256, device=device,
                                                         amp=amp)))
            if last or epoch % cfg.eval_every == 0:
                history.append({"epoch": epoch, "step": step, **metrics})
            logger.scalars(step, metrics, epoch=epoch)
            log.info("evaluator epoch %d: %s", epoch, ", ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if k in _SHOWN or k.startswith("train/")))
    finally:
        logger.close()
    assert ceiling is not None  # the loop always ends with the final evaluation
    model.eval()
    model.cpu().save_pretrained(out_dir)
    model.to(device)
    ref = reference_statistics(model, data_root, "test", cache_dir=out_dir, data=test, device=device)
    minutes = (time.monotonic() - t_start) / 60
    summary: dict[str, Any] = {
        "out_dir": str(out_dir), "data_root": str(data_root), "data_fingerprint": fingerprint,
        "ceiling_attr_acc": ceiling.overall, "epochs": epoch, "steps": step, "minutes": minutes,
        "stopped": stopped or "done", "train_images": len(train), "test_images": len(test),
        "fid_sb_reference": ref["path"], "device": str(device), "t2igan_version": __version__,
        "ceiling": ceiling.as_dict(), "history": history, "config": to_dict(cfg.replace(model=mcfg)),
    }
    write_json_atomic(out_dir / EVALUATOR_FILE, summary)
    log.info("attribute classifier saved to %s: ceiling attribute accuracy %.4f (%.1f min)", out_dir,
             ceiling.overall, minutes)
    return summary
