"""The GAN trainer: bookkeeping only. What is minimised is the family's objective (:mod:`t2igan.objectives`).

``train_gan(config)`` loads the data and a pretrained DAMSM (text encoder, image encoder, vocabulary), builds
the family's generator and discriminator, and runs the objective's phases step by step. It owns what every
family shares: optimizers, mixed precision (bf16 autocast on CPU and CUDA, fp16 with a gradient scaler on
CUDA; losses and penalties in fp32), data parallelism, an optional EMA of the generator, snapshots and resume,
logs, sample grids, periodic evaluation and the export of a model directory that
:class:`t2igan.pipeline.T2IPipeline` opens.

Data parallelism. Under ``torchrun`` every process trains on its own shard of each epoch (``batch_size`` is
per process) and, after each phase's backward, the gradients of that phase's parameters are averaged with
one all-reduce, so the replicas stay identical (they start from rank 0's weights). This is done here rather
than by ``DistributedDataParallel`` because the objectives run several forwards of one network per phase and
a double backward for the gradient penalty, which DDP's hooks do not support. The generator's batch
normalisation is synchronised across processes (``nn.SyncBatchNorm`` on CUDA, a differentiable all-reduce
on CPU/gloo). Rank 0 writes logs and snapshots; the others wait.

Resume. A snapshot holds the networks, the EMA, the optimizers, the scaler, the step, the epoch and the
position inside it, and every rank's RNG states. The training noise of a step comes from a generator seeded
by (seed, step, rank) and the data order from (seed, epoch), so N steps straight and N/2 + resume + N/2 give
the same weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from t2igan.config import ConfigBase, ConfigError, from_dict, to_dict
from t2igan.data.base import DataConfig, TextImageDataset, load_corpus
from t2igan.data.collate import EpochSampler, batch_to, collate_batch, make_loader
from t2igan.evaluation.r_precision import r_precision
from t2igan.models.base import (
    ModelBase,
    TextCondition,
    load_state_dict_file,
    load_state_strict,
    save_state_dict_file,
)
from t2igan.models.registry import FAMILIES, read_model_dir, write_model_dir
from t2igan.objectives.base import OBJECTIVES, Networks, Objective, StepContext
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
from t2igan.training.damsm import DAMSMEncoders, EncodersError, load_encoders
from t2igan.training.logs import Progress, RunLogger, log_long_captions
from t2igan.training.sync_bn import convert_sync_batchnorm, revert_batchnorm
from t2igan.utils import dist as tdist
from t2igan.utils.device import resolve_amp, resolve_device
from t2igan.utils.image import captioned_grid, mask_strip, tensor_to_pil
from t2igan.utils.io import log_series, read_json, write_json_atomic
from t2igan.utils.seeding import image_noise, step_generator

__all__ = ["GANTrainConfig", "GANRunConfig", "GANTrainer", "StepRunner", "train_gan", "build_networks", "export_run", "TrainError",
           "find_damsm", "plot_curves"]

log = logging.getLogger("t2igan.training")


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


@dataclass
class GANTrainConfig(ConfigBase):
    epochs: int = 600  # official: 600 (SSA-GAN birds), 1301 (DF-GAN birds)
    max_steps: int | None = None  # stop after this many steps in total
    max_minutes: float | None = None  # stop (snapshot + export) after this wall-clock budget per call
    batch_size: int = 24  # per process (official SSA-GAN 24, DF-GAN 32 per GPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun, cuda means cuda:LOCAL_RANK)
    # autocast of the networks: auto = bf16 where the device runs it natively (CUDA, AVX-512 CPUs), else fp32;
    # fp16 (CUDA only) uses a gradient scaler
    amp: Literal["off", "auto", "bf16", "fp16"] = "off"
    channels_last: bool = False  # channels_last memory format for the generator and discriminator
    ema: float | None = None  # decay of an exponential moving average of the generator (e.g. 0.999)
    export_ema: bool = True  # export the EMA generator when there is one
    sync_bn: bool = True  # synchronise the generator's batch statistics across processes
    deterministic: bool = False  # deterministic algorithms only (slower on CUDA)
    seed: int = 100  # official manualSeed
    snapshot_every: int = 1000  # steps between snapshots (and at the end / on a stop)
    snapshot_minutes: float | None = 15.0  # also snapshot when this much time passed since the last one
    keep_snapshots: int = 3
    log_every: int = 50  # steps between logged losses
    image_every: int = 500  # steps between fixed-noise sample grids (0: only at the end)
    sample_captions: int = 8  # test captions in the sample grid
    eval_every: int = 0  # steps between evaluations (0: only at the end; negative: never)
    eval_captions: int = 500  # generated test images per evaluation (R-precision with the DAMSM encoders)
    eval_rp_trials: int = 1000
    eval_attributes: str | None = None  # SynthBirds attribute classifier dir ('auto': DATA/evaluator if present)
    init_from: str | None = None  # a model dir (or run dir) whose generator starts this one (StackGAN stage II)
    # the first warmup_steps steps update only the optimizers named here (e.g. a new discriminator catching up
    # with a generator from init_from before the generator learns from it); 0: off. On the command line:
    # --set train.warmup_steps=300 --set "train.warmup_optimizers=[D]"
    warmup_steps: int = 0
    warmup_optimizers: tuple[str, ...] = ("D",)
    max_nonfinite: int = 5  # consecutive steps with a non-finite loss before the run stops
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_steps and not self.warmup_optimizers:
            raise ValueError("warmup_optimizers is empty: name the optimizers that train during the warm-up, e.g. [D]")


@dataclass
class GANRunConfig(ConfigBase):
    name: str = "gan"
    family: str = "ssagan"
    data: DataConfig = field(default_factory=DataConfig)
    damsm: str | None = None  # pretrained DAMSM dir (text_encoder/, image_encoder/, vocab.json), or 'auto'
    generator: dict[str, Any] = field(default_factory=dict)  # fields of the family's generator config
    discriminator: dict[str, Any] = field(default_factory=dict)  # fields of its discriminator config
    objective: dict[str, Any] = field(default_factory=dict)  # fields of its objective config
    train: GANTrainConfig = field(default_factory=GANTrainConfig)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES.names())}")
        self.family_configs()  # strict check of the family's sections, naming the bad key

    def family_configs(self, cond_dim: int | None = None) -> tuple[ConfigBase, ConfigBase, ConfigBase]:
        """The generator, discriminator and objective configs (image size from ``data``)."""
        fam = FAMILIES.get(self.family)
        try:
            g_cls, d_cls = fam.classes(self.data.image_size)
            g_sizes, d_sizes = fam.sizes(self.data.image_size, cond_dim)
        except ValueError as exc:
            raise ConfigError(f"data.image_size: {exc}") from exc
        g = from_dict(g_cls.config_class, g_sizes | self.generator, source="generator")
        d = from_dict(d_cls.config_class, d_sizes | self.discriminator, source="discriminator")
        o = from_dict(OBJECTIVES.get(self.family).config_class, self.objective, source="objective")
        for name, cfg in (("generator", g), ("discriminator", d)):
            size = getattr(cfg, "image_size", self.data.image_size)
            if size != self.data.image_size:
                raise ConfigError(f"{name} makes/takes {size} px images but data.image_size="
                                  f"{self.data.image_size}; they must agree")
        return g, d, o


def _load_damsm(path: str | None) -> DAMSMEncoders:
    if not path:
        raise TrainError("training needs a pretrained DAMSM: set damsm=DIR (a directory with text_encoder/, "
                         "image_encoder/ and vocab.json, written by `t2igan pretrain-damsm` as RUN/encoders or "
                         "by `t2igan convert damsm`)")
    try:
        return load_encoders(path, option="damsm")
    except (FileNotFoundError, EncodersError) as exc:  # the directory's own checks (a corrupt file raises as is)
        raise TrainError(str(exc)) from exc


def find_damsm(runs_root: str | Path, data: DataConfig) -> Path:
    """The newest ``RUN/encoders`` under ``runs_root`` of a DAMSM run on the same dataset (kind and root)."""
    root = Path(runs_root)
    want = (data.kind, str(Path(data.root).resolve()))
    found: list[Path] = []
    for cfg_path in sorted(root.glob("*/run_config.json")) if root.is_dir() else []:
        enc = cfg_path.parent / "encoders"
        try:
            saved = read_json(cfg_path)
        except ValueError:
            continue
        d = saved.get("data", {}) if isinstance(saved, dict) else {}
        if "text_encoder" not in saved or not (enc / "vocab.json").is_file():
            continue
        if (d.get("kind"), str(Path(str(d.get("root"))).resolve())) == want:
            found.append(enc)
    if not found:
        raise TrainError(f"damsm=auto: no pretrained DAMSM for the {data.kind} data at {data.root} under "
                         f"{root}/ (looked for RUN/encoders of `t2igan pretrain-damsm` runs on it); pretrain "
                         "one first (e.g. `t2igan pretrain-damsm --preset damsm-synthbirds`) or set damsm=DIR")
    return found[-1]


def build_networks(config: GANRunConfig, damsm: DAMSMEncoders) -> tuple[ModelBase, ModelBase, Objective]:
    """The family's generator, discriminator (seeded with ``train.seed``) and objective."""
    g_cls, d_cls = FAMILIES.get(config.family).classes(config.data.image_size)
    # precomputed embeddings (data.text_embeddings): the generator's own text_dim, checked against the data
    cond_dim = None if config.data.text_embeddings else damsm.text_encoder.embed_dim
    g_cfg, d_cfg, o_cfg = config.family_configs(cond_dim=cond_dim)
    torch.manual_seed(config.train.seed)
    return g_cls(g_cfg), d_cls(d_cfg), OBJECTIVES.get(config.family)(o_cfg)


def _init_generator(G: ModelBase, source: str | None, damsm: DAMSMEncoders) -> None:
    """Start ``G`` from the generator of a model directory (or of ``RUN/model``): the whole generator when the
    classes agree, or the part the class takes (StackGAN stage II: the stage-I generator). Without a source, a
    generator that needs one (``needs_init_from``) is an error naming the option."""
    if not source:
        if getattr(G, "needs_init_from", None):
            raise TrainError(f"a {type(G).__name__} trains from {G.needs_init_from}: set train.init_from")
        return
    d = Path(source)
    if (d / "model" / "pipeline.json").is_file():
        d = d / "model"
    md = read_model_dir(d, components=("generator", "text_encoder"))
    te = md.components["text_encoder"]
    if te.config.vocab_size != damsm.text_encoder.config.vocab_size:
        raise TrainError(f"train.init_from={source}: its text encoder has {te.config.vocab_size} words, this run's "
                         f"DAMSM {damsm.text_encoder.config.vocab_size}; both stages need the same DAMSM")
    ours = damsm.text_encoder.state_dict()
    if any(not torch.equal(v, ours[k]) for k, v in te.state_dict().items()):
        log.warning("train.init_from=%s was trained with another text encoder than this run's DAMSM (%s)", source,
                    damsm.vocab_path.parent)
    part = G.init_from(md.components["generator"])
    log.info("train.init_from: %s from %s", part, d)


def _autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _average_gradients(params: Sequence[nn.Parameter]) -> None:
    """Mean of every parameter's gradient over the processes, in one all-reduce."""
    if tdist.world_size() <= 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= tdist.world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def _broadcast_module(module: nn.Module) -> None:
    if tdist.world_size() <= 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def _all_true(flag: bool, device: torch.device) -> bool:
    if tdist.world_size() <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def _mean_stats(stats: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    if not stats:
        return {}
    keys = sorted(stats)
    t = torch.stack([stats[k].float().to(device) for k in keys])
    if tdist.world_size() > 1:
        dist.all_reduce(t)
        t /= tdist.world_size()
    return dict(zip(keys, t.tolist()))


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _plain_copy(module: nn.Module) -> nn.Module:
    """A CPU copy with plain batch norm (for export and sampling outside the process group)."""
    m = copy.deepcopy(module).to("cpu", memory_format=torch.contiguous_format)
    return revert_batchnorm(m)


class StepRunner:
    """One training step of an objective: its phases with their optimizers, autocast, scaler, averaging.

    Builds an Adam per :class:`~t2igan.objectives.base.OptimizerSpec`; :meth:`step` runs
    :meth:`Objective.begin` and then every phase due at ``step_index`` (zero grad, loss under autocast,
    backward, gradient average across processes, optimizer step). A phase whose loss is not finite on any
    process is skipped on all of them. Returns the phases' stats and whether every loss was finite.
    """

    def __init__(self, objective: Objective, nets: Networks, *, device: torch.device, amp: str = "off") -> None:
        if amp == "fp16" and device.type != "cuda":
            raise TrainError("amp=fp16 needs CUDA; use amp=auto (bf16 where the CPU has it) on the CPU")
        amp = resolve_amp(amp, device)
        self.objective, self.nets, self.device, self.amp = objective, nets, device, amp
        self.opt_params: dict[str, list[nn.Parameter]] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.specs = objective.optimizers()
        for key, spec in self.specs.items():
            if spec.params is not None:
                params = spec.params(nets)
            else:
                params = [p for n in spec.networks for p in nets.get(n).parameters()]
            for p in params:
                p.requires_grad_(True)
            self.opt_params[key] = params
            self.optimizers[key] = torch.optim.Adam(params, lr=spec.lr, betas=spec.betas)
        trained = {id(p) for params in self.opt_params.values() for p in params}
        for spec in self.specs.values():  # parts of a trained network that no optimizer takes (StackGAN's Stage I)
            for n in spec.networks:
                for p in nets.get(n).parameters():
                    if id(p) not in trained:
                        p.requires_grad_(False)
        self.phases = objective.phases()
        for ph in self.phases:
            if ph.optimizer not in self.optimizers:
                raise TrainError(f"phase {ph.name!r} uses optimizer {ph.optimizer!r}, which the objective "
                                 f"does not define ({', '.join(self.optimizers)})")
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    def set_epoch(self, epoch: int) -> None:
        """The learning rates of ``epoch`` (objectives with a schedule, e.g. StackGAN's halving every 20 epochs)."""
        for key, spec in self.specs.items():
            for group in self.optimizers[key].param_groups:
                group["lr"] = spec.lr_at(epoch)

    def set_trainable(self, key: str | None) -> None:
        """Only the parameters of optimizer ``key`` require gradients (all of them when ``key`` is None)."""
        for k, params in self.opt_params.items():
            on = key is None or k == key
            for p in params:
                p.requires_grad_(on)

    def grad(self, output: torch.Tensor, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``autograd.grad(output, inputs, create_graph=True)``, scaled and unscaled under fp16."""
        if self.scaler is None:
            return torch.autograd.grad(output, list(inputs), create_graph=True)
        scaled = torch.autograd.grad(self.scaler.scale(output), list(inputs), create_graph=True)
        inv = 1.0 / self.scaler.get_scale()
        return tuple(g * inv for g in scaled)

    def step(self, batch: dict[str, Any], noise: torch.Tensor, step_index: int = 0,
             only: Sequence[str] | None = None) -> tuple[dict[str, torch.Tensor], bool]:
        """Run the phases due at ``step_index``; with ``only``, just the phases of those optimizers."""
        ctx = StepContext(batch=batch, noise=noise, grad=self.grad)
        self.set_trainable(None)
        with _autocast(self.device, self.amp):
            self.objective.begin(self.nets, ctx)
        stats: dict[str, torch.Tensor] = {}
        all_finite = True
        for ph in self.phases:
            if step_index % ph.interval or (only is not None and ph.optimizer not in only):
                continue
            opt = self.optimizers[ph.optimizer]
            self.set_trainable(ph.optimizer)
            opt.zero_grad(set_to_none=True)
            with _autocast(self.device, self.amp if ph.autocast else "off"):
                loss, st = self.objective.loss(ph.name, self.nets, ctx)
            stats.update(st)
            if not _all_true(bool(torch.isfinite(loss.detach()).item()), self.device):
                all_finite = False
                log.warning("step %d: non-finite %s loss; its update is skipped", step_index, ph.name)
                continue
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            _average_gradients(self.opt_params[ph.optimizer])
            if self.scaler is not None:
                self.scaler.step(opt)
                self.scaler.update()
            else:
                opt.step()
        self.set_trainable(None)
        return stats, all_finite


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already consumed
    skipped: int = 0  # steps with a non-finite loss, in total
    nonfinite_run: int = 0  # ... in a row


class GANTrainer:
    """One training run: ``GANTrainer(config, runs_root, resume, hooks).run(max_steps)`` (what :func:`train_gan`
    does); the networks are ``trainer.nets``."""

    def __init__(self, config: GANRunConfig, runs_root: str | Path, resume: str | Path | None,
                 hooks: Sequence[Callable[..., dict[str, float]]]) -> None:
        self.config = config
        cfg = self.cfg = config.train
        device = resolve_device(cfg.device)
        self.distributed = tdist.init_from_env(device)
        self.rank, self.world = tdist.rank(), tdist.world_size()
        if device.type == "cuda" and self.distributed:
            device = torch.device("cuda", tdist.local_rank())
        self.device = device
        if cfg.amp == "fp16" and device.type != "cuda":
            raise TrainError("amp=fp16 needs CUDA; use amp=auto (bf16 where the CPU has it) on the CPU")
        self._was_deterministic = torch.are_deterministic_algorithms_enabled()
        if cfg.deterministic:  # restored at the end of run()
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.hooks = list(hooks)

        if config.damsm == "auto":
            config = self.config = config.replace(damsm=str(find_damsm(runs_root, config.data)))
            log.info("damsm=auto: using %s", config.damsm)
        damsm = _load_damsm(config.damsm)
        self.vocab = damsm.vocab
        data_cfg = config.data if config.data.vocab else config.data.replace(vocab=str(damsm.vocab_path))
        corpus = load_corpus(data_cfg)
        self.train_ds = TextImageDataset.from_config(data_cfg, "train", corpus)
        self.test_ds = TextImageDataset.from_config(data_cfg, "test", corpus, train=False)
        if self.rank == 0:
            log_long_captions(self.train_ds, self.test_ds)
        if len(self.train_ds) < cfg.batch_size * self.world:
            raise TrainError(f"the training split has {len(self.train_ds)} items, fewer than batch_size="
                             f"{cfg.batch_size} x {self.world} processes")

        G, D, self.objective = build_networks(config, damsm)
        if config.data.text_embeddings:
            if not getattr(self.objective, "accepts_text_embeddings", False):
                raise TrainError(f"data.text_embeddings: the {config.family} objective conditions on the DAMSM "
                                 "text encoder; precomputed embeddings are for StackGAN")
            dim = int(self.train_ds.records[0].embeddings.shape[-1])
            if dim != G.config.text_dim:
                raise TrainError(f"{config.data.text_embeddings}: embeddings have {dim} dims but the generator "
                                 f"takes {G.config.text_dim} (set generator.text_dim={dim})")
        if resume is None:
            _init_generator(G, cfg.init_from, damsm)
        needs_ie = getattr(self.objective, "needs_image_encoder", lambda: True)() or cfg.eval_every >= 0
        self.nets = Networks(G, D, damsm.text_encoder, damsm.image_encoder if needs_ie else None)
        self.g_config = G.config
        # the encoders train only through an optimizer of the objective (fine-tuning); never otherwise
        self.nets.text_encoder.requires_grad_(False)
        if self.nets.image_encoder is not None:
            self.nets.image_encoder.requires_grad_(False)
        if self.world > 1 and cfg.sync_bn:
            self.nets.generator = convert_sync_batchnorm(self.nets.generator, device)
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for name in ("generator", "discriminator"):
            setattr(self.nets, name, getattr(self.nets, name).to(device, memory_format=fmt))
        self.nets.text_encoder.to(device)
        if self.nets.image_encoder is not None:
            self.nets.image_encoder.to(device)
        for name in ("generator", "discriminator", "text_encoder", "image_encoder"):
            module = getattr(self.nets, name)
            if module is not None:
                _broadcast_module(module)
        self.ema = None
        if cfg.ema is not None:
            if not 0.0 < cfg.ema < 1.0:
                raise TrainError(f"train.ema must be in (0, 1), got {cfg.ema}")
            self.ema = copy.deepcopy(self.nets.generator).eval().requires_grad_(False)

        self.runner = StepRunner(self.objective, self.nets, device=device, amp=cfg.amp)
        bad = [k for k in cfg.warmup_optimizers if k not in self.runner.optimizers]
        if cfg.warmup_steps and bad:
            raise TrainError(f"train.warmup_optimizers={list(cfg.warmup_optimizers)}: the {config.family} objective's "
                             f"optimizers are {', '.join(self.runner.optimizers)}")
        self.optimizers, self.scaler = self.runner.optimizers, self.runner.scaler

        self.state = _State()
        if resume is not None:
            self.run_dir = Path(resume)
            self._restore()
        else:
            run_dir = None
            if self.rank == 0:
                run_dir = make_run_dir(runs_root, config.name)
                write_json_atomic(run_dir / "run_config.json", to_dict(config))
            self.run_dir = Path(tdist.broadcast_object(str(run_dir) if run_dir else None))
        self.snaps = SnapshotManager(self.run_dir, keep=cfg.keep_snapshots)
        self.logger = RunLogger(self.run_dir, tensorboard=cfg.tensorboard, enabled=self.rank == 0)
        self.sampler = EpochSampler(len(self.train_ds), batch_size=cfg.batch_size, seed=cfg.seed,
                                    rank=self.rank, world_size=self.world)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        self._fixed = self._fixed_samples()

    # ------------------------------------------------------------------------------------------ snapshots

    def _modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"generator": self.nets.generator, "discriminator": self.nets.discriminator}
        if "E" in self.optimizers:
            mods["text_encoder"] = self.nets.text_encoder
            if self.nets.image_encoder is not None:
                mods["image_encoder"] = self.nets.image_encoder
        if self.ema is not None:
            mods["generator_ema"] = self.ema
        return mods

    def snapshot(self) -> None:
        rngs = [capture_rng_state()]
        if self.world > 1:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, capture_rng_state())
        if self.rank == 0:
            s = self.state

            def write(tmp: Path) -> None:
                for name, module in self._modules().items():
                    save_state_dict_file(module.state_dict(), tmp / f"{name}.safetensors")
                save_trainer_state(tmp / "trainer_state.pt", {
                    "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                    "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                    "step": s.step, "epoch": s.epoch, "batch": s.batch, "skipped": s.skipped,
                    "nonfinite_run": s.nonfinite_run, "world_size": self.world, "batch_size": self.cfg.batch_size,
                    "rng": rngs})
            self.snaps.save(f"step-{s.step:08d}", write)
        tdist.barrier()
        self._last_snapshot = time.monotonic()

    def _restore(self) -> None:
        snap = SnapshotManager(self.run_dir).latest()
        if snap is None:
            raise ResumeError(f"{self.run_dir} has no snapshot to resume from")
        saved = read_json(self.run_dir / "run_config.json")
        if saved.get("family") != self.config.family:
            raise ResumeError(f"{self.run_dir} trained family {saved.get('family')!r}, not {self.config.family!r}")
        for name, module in self._modules().items():
            if name == "generator_ema" and not (snap / f"{name}.safetensors").is_file():
                continue  # EMA switched on at this resume: started from the restored generator below
            load_state_strict(module, load_state_dict_file(snap / f"{name}.safetensors"), source=str(snap))
        st = load_trainer_state(snap / "trainer_state.pt")
        if self.ema is not None and not (snap / "generator_ema.safetensors").is_file():
            self.ema.load_state_dict(self.nets.generator.state_dict())
            log.warning("%s has no EMA generator (train.ema was off, or the file was left out): the EMA (decay %g) "
                        "starts from the generator at step %d", snap, self.cfg.ema, int(st["step"]))
        for k, o in self.optimizers.items():
            if k not in st["optimizers"]:
                raise ResumeError(f"{snap}: no state of optimizer {k!r} (the run had "
                                  f"{', '.join(st['optimizers'])}); the objective changed")
            o.load_state_dict(st["optimizers"][k])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        batch = int(st["batch"])
        # snapshots before the batch size was recorded: the run's config as saved (such runs predate record_resume,
        # so it holds the batch size the run was created with)
        saved_bs = (saved.get("train") or {}).get("batch_size", self.cfg.batch_size)
        old_world, old_bs = int(st.get("world_size", self.world)), int(st.get("batch_size", saved_bs))
        if (old_world, old_bs) != (self.world, self.cfg.batch_size):
            # the epoch goes on after the samples all ranks took so far (data order depends on (seed, epoch))
            batch = EpochSampler.resume_batch(batch, old_world_size=old_world, old_batch_size=old_bs,
                                              world_size=self.world, batch_size=self.cfg.batch_size)
            before, now = old_world * old_bs, self.world * self.cfg.batch_size
            change = f"the global batch stays {now}" if before == now else f"the global batch changes from {before} to {now}"
            log.warning("%s was written by %d process(es) x batch %d, now %d x %d: %s; epoch %d goes on after its "
                        "first %d samples", snap, old_world, old_bs, self.world, self.cfg.batch_size, change,
                        int(st["epoch"]), batch * now)
        self.state = _State(int(st["step"]), int(st["epoch"]), batch, int(st.get("skipped", 0)),
                            int(st.get("nonfinite_run", 0)))
        rngs = st["rng"]
        if len(rngs) == self.world:
            restore_rng_state(rngs[self.rank])
        else:
            log.warning("%s was written by %d processes, now %d: RNG states not restored (training noise and "
                        "data order do not depend on them)", snap, len(rngs), self.world)
        log.info("resumed %s at step %d (epoch %d, batch %d)", snap, self.state.step, self.state.epoch,
                 self.state.batch)
        if self.rank == 0:
            record_resume(self.run_dir, saved, to_dict(self.config), step=self.state.step)

    # ------------------------------------------------------------------------------------------ samples

    def _fixed_samples(self) -> dict[str, Any]:
        n = min(self.cfg.sample_captions, len(self.test_ds))
        ds = self.test_ds.with_mode(caption_mode="first", load_images=False)
        b = collate_batch([ds[i * len(ds) // max(n, 1)] for i in range(n)])
        caps, lengths = b["captions"], b["lengths"]
        texts = [" ".join(self.vocab.word(int(w)) for w in caps[r, :lengths[r]]) for r in range(n)]
        noise = torch.stack([image_noise(self.cfg.seed, i, self.nets.generator.noise_dim) for i in range(n)])
        return {"captions": caps, "lengths": lengths, "texts": texts, "noise": noise,
                "embeddings": b.get("text_embeddings")}

    @torch.no_grad()
    def _generate(self, generator: nn.Module, captions: torch.Tensor, lengths: torch.Tensor,
                  noise: torch.Tensor, embeddings: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        was = generator.training
        generator.eval()
        if embeddings is not None:  # a generator of precomputed embeddings
            cond = TextCondition(embeddings.to(self.device).float())
        else:
            cond = self.nets.text_encoder.encode(captions.to(self.device), lengths.to(self.device))
        with _autocast(self.device, "bf16" if self.runner.amp == "bf16" else "off"):  # the resolved mode (amp=auto)
            img, masks = generator.synthesize(noise.to(self.device), cond)
        generator.train(was)
        return img.float().cpu(), ([m.float().cpu() for m in masks] if masks is not None else None)

    def sample_grid(self) -> Path | None:
        if self.rank != 0:
            return None
        f = self._fixed
        gen = self.ema if self.ema is not None else self.nets.generator
        imgs, masks = self._generate(gen, f["captions"], f["lengths"], f["noise"], f["embeddings"])
        pils = tensor_to_pil(imgs)
        grid = captioned_grid(pils, f["texts"], cols=min(4, len(pils)))
        out = self.run_dir / "samples"
        out.mkdir(exist_ok=True)
        path = out / f"step_{self.state.step:08d}.png"
        grid.save(path)
        self.logger.image("samples/grid", grid, self.state.step)
        if masks is not None:
            strip = mask_strip(pils[0], [m[0, 0] for m in masks])
            strip.save(out / f"masks_step_{self.state.step:08d}.png")
            self.logger.image("samples/masks", strip, self.state.step)
        return path

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """R-precision of generated test images (DAMSM encoders) and the metrics of the hooks (rank 0)."""
        metrics: dict[str, float] = {}
        if self.rank == 0 and self.nets.image_encoder is not None and self.cfg.eval_captions > 0:
            ds = self.test_ds.with_mode(caption_mode="all", load_images=False)
            n = min(self.cfg.eval_captions, len(ds))
            pick = [i * len(ds) // n for i in range(n)]
            gen = self.ema if self.ema is not None else self.nets.generator
            ie, te = self.nets.image_encoder, self.nets.text_encoder
            was = ie.training
            ie.eval()
            codes, sents, classes = [], [], []
            scorer = self._attribute_scorer()
            for s in range(0, n, 50):
                items = [ds[i] for i in pick[s:s + 50]]
                b = collate_batch(items)
                caps, lengths = b["captions"], b["lengths"]
                noise = torch.stack([image_noise(self.cfg.seed + 1, s + r, self.nets.generator.noise_dim)
                                     for r in range(len(items))])
                imgs, _ = self._generate(gen, caps, lengths, noise, b.get("text_embeddings"))
                codes.append(ie(imgs.to(self.device))[1].float().cpu())
                sents.append(te(caps.to(self.device), lengths.to(self.device))[1].float().cpu())
                classes += [int(it["class_id"]) for it in items]
                if scorer is not None:
                    recs = [self._attr_records[it["key"]] for it in items]
                    scorer.update(imgs, [r["attributes"] for r in recs],
                                  [r["captions"][int(it["caption_index"])]["mentions"] for r, it in zip(recs, items)])
            ie.train(was)
            if scorer is not None:
                res = scorer.result()
                metrics.update({"eval/attr_acc": res.overall, "eval/attr_acc_macro": res.macro})
            cls = torch.as_tensor(classes)
            rp = r_precision(torch.cat(codes), torch.arange(n), torch.cat(sents), cls, cls,
                             trials=self.cfg.eval_rp_trials, folds=10 if self.cfg.eval_rp_trials % 10 == 0 else 1)
            metrics.update({"eval/r_precision": rp.mean, "eval/r_precision_std": rp.std})
        if self.rank == 0:
            gen = self.ema if self.ema is not None else self.nets.generator
            for hook in self.hooks:
                metrics.update(hook(generator=gen, text_encoder=self.nets.text_encoder, vocab=self.vocab,
                                    step=self.state.step, device=self.device))
        tdist.barrier()
        return metrics

    def _attribute_scorer(self):
        """An AttributeScorer when ``train.eval_attributes`` names a classifier (loaded once), else None."""
        path = self.cfg.eval_attributes
        if path == "auto":
            auto = Path(self.config.data.root) / "evaluator"
            path = str(auto) if (auto / "config.json").is_file() else None
        if not path:
            return None
        if getattr(self, "_attr_classifier", None) is None:
            from t2igan.data.synthetic import read_attributes
            from t2igan.evaluation.attributes import load_attribute_classifier

            self._attr_classifier = load_attribute_classifier(path, self.config.data.root).to(self.device)
            self._attr_records = read_attributes(self.config.data.root)
        from t2igan.evaluation.attributes import AttributeScorer

        return AttributeScorer.for_classifier(self._attr_classifier, device=self.device)

    # ------------------------------------------------------------------------------------------ export

    def export(self, out: Path | None = None) -> Path | None:
        if self.rank != 0:
            tdist.barrier()
            return None
        out = out or self.run_dir / "model"
        gen = self.ema if (self.ema is not None and self.cfg.export_ema) else self.nets.generator
        write_model_dir(out, self.config.family, {
            "generator": _plain_copy(gen), "text_encoder": copy.deepcopy(self.nets.text_encoder).cpu(),
            "discriminator": copy.deepcopy(self.nets.discriminator).to("cpu", memory_format=torch.contiguous_format),
        }, self.vocab, words_num=self.config.data.words_num, **_provenance(self.config),
            trained={"run": str(self.run_dir.resolve()), "step": self.state.step, "epoch": self.state.epoch,
                     "ema": gen is self.ema})
        tdist.barrier()
        return out

    # ------------------------------------------------------------------------------------------ the loop

    def run(self, max_steps: int | None) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        t_start = self._last_snapshot = time.monotonic()
        deadline = t_start + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        bar = Progress(total, f"{self.config.family} training", enabled=cfg.progress and self.rank == 0,
                       initial=s.step, deadline=deadline if math.isfinite(deadline) else None)
        self.nets.generator.train()
        self.nets.discriminator.train()
        for name in ("text_encoder", "image_encoder"):
            module = getattr(self.nets, name)
            if module is not None:
                module.eval()  # frozen, or fine-tuned in the objective's own phase
        stop = ""
        steps_this_call = 0
        window_t, window_n = time.monotonic(), 0
        metrics: dict[str, float] = {}
        with StopFlag() as flag:
            while s.step < total and s.epoch < cfg.epochs and not stop:
                if s.batch >= self.steps_per_epoch:  # resumed under another world/batch size at an epoch's end
                    s.epoch, s.batch = s.epoch + 1, 0
                    continue
                self.train_ds.set_epoch(s.epoch)
                self.sampler.set_epoch(s.epoch, s.batch)
                self.runner.set_epoch(s.epoch)
                loader = make_loader(self.train_ds, cfg.batch_size, shuffle=False, drop_last=True,
                                     sampler=self.sampler, num_workers=self.config.data.num_workers,
                                     generator=torch.Generator().manual_seed(cfg.seed + s.epoch))
                for batch in loader:
                    batch = batch_to(batch, self.device, cfg.channels_last)
                    noise = torch.randn(batch["captions"].shape[0], self.nets.generator.noise_dim,
                                        generator=step_generator(cfg.seed, s.step, self.rank)).to(self.device)
                    only = cfg.warmup_optimizers if s.step < cfg.warmup_steps else None
                    stats, finite = self.runner.step(batch, noise, s.step, only=only)
                    if self.ema is not None:
                        _ema_update(self.ema, self.nets.generator, cfg.ema)
                    s.step += 1
                    s.batch += 1
                    steps_this_call += 1
                    window_n += batch["captions"].shape[0] * self.world
                    if finite:
                        s.nonfinite_run = 0
                    else:
                        s.skipped += 1
                        s.nonfinite_run += 1
                    if s.batch == self.steps_per_epoch:
                        s.epoch += 1
                        s.batch = 0
                    if s.step % cfg.log_every == 0 or s.step == total:
                        vals = _mean_stats(stats, self.device)
                        now = time.monotonic()
                        vals["train/images_per_s"] = window_n / max(now - window_t, 1e-9)
                        window_t, window_n = now, 0
                        for k, o in self.optimizers.items():
                            vals[f"lr/{k}"] = o.param_groups[0]["lr"]
                        self.logger.scalars(s.step, vals, epoch=s.epoch)
                        bar.update(0, **{k: v for k, v in vals.items() if k in ("d/loss", "g/loss", "d/gp")})
                    bar.update(1)
                    if s.nonfinite_run >= cfg.max_nonfinite:
                        stop = f"{s.nonfinite_run} steps in a row with a non-finite loss"
                    elif flag.stop:
                        stop = "signal"
                    elif time.monotonic() > deadline:
                        stop = "time budget"
                    elif (max_steps and steps_this_call >= max_steps) or s.step >= total:
                        stop = "max_steps" if s.step < total else ""
                    if cfg.image_every > 0 and s.step % cfg.image_every == 0:
                        self.sample_grid()
                        tdist.barrier()
                    if cfg.eval_every > 0 and s.step % cfg.eval_every == 0:
                        metrics = self.evaluate()
                        if metrics:
                            self.logger.scalars(s.step, metrics, epoch=s.epoch)
                    snap_due = s.step % cfg.snapshot_every == 0 or (
                        cfg.snapshot_minutes is not None
                        and time.monotonic() - self._last_snapshot > cfg.snapshot_minutes * 60)
                    if self.world > 1:  # time-based decisions must agree across processes
                        stop, snap_due = tdist.broadcast_object((stop, snap_due))
                    if stop or s.step >= total:
                        break
                    if snap_due:
                        self.snapshot()
                if s.step >= total and not stop:
                    break
        bar.close()
        self.snapshot()
        self.sample_grid()
        if cfg.eval_every >= 0:
            metrics = self.evaluate()
            if metrics:
                self.logger.scalars(s.step, metrics, epoch=s.epoch)
        model_dir = self.export()
        self.logger.close()
        torch.use_deterministic_algorithms(self._was_deterministic)
        summary = {"run_dir": str(self.run_dir), "model": str(model_dir) if model_dir else None,
                   "step": s.step, "epoch": s.epoch, "stopped": stop or "done", "skipped_steps": s.skipped,
                   "minutes": (time.monotonic() - t_start) / 60, "world_size": self.world, **metrics}
        if self.rank == 0:
            write_json_atomic(self.run_dir / "summary.json", summary)
            plot_curves(self.run_dir)
        if stop.endswith("non-finite loss"):
            raise TrainError(f"training stopped: {stop}; the last snapshot is in {self.run_dir / 'snapshots'} "
                             "(lower the learning rates or turn off amp, then resume)")
        return summary


def plot_curves(run_dir: str | Path) -> Path | None:
    """``RUN/curves.png``: the losses and the evaluation metrics of ``log.jsonl`` over the steps."""
    from PIL import Image

    from t2igan.utils.image import line_plot

    groups = {"discriminator": ("d/loss", "d/real", "d/fake", "d/mismatch"), "generator": ("g/adv", "g/loss"),
              "penalty": ("d/gp",)}
    raw = log_series(Path(run_dir) / "log.jsonl", lambda k: True)
    series = {g: {k: raw[k] for k in keys if k in raw} for g, keys in groups.items()}
    series["evaluation"] = {k: v for k, v in raw.items() if k.startswith("eval/") and not k.endswith("_std")}
    charts = [line_plot(s, title=g) for g, s in series.items() if s]
    if not charts:
        return None
    canvas = Image.new("RGB", (charts[0].width, sum(c.height for c in charts)), "white")
    y = 0
    for c in charts:
        canvas.paste(c, (0, y))
        y += c.height
    out = Path(run_dir) / "curves.png"
    canvas.save(out)
    return out


def train_gan(config: GANRunConfig, *, runs_root: str | Path = "runs", resume: str | Path | None = None,
              max_steps: int | None = None,
              hooks: Sequence[Callable[..., dict[str, float]]] = ()) -> dict[str, Any]:
    """Train a GAN; returns a summary (run dir, exported model dir, step, why it stopped, last metrics).

    ``resume`` continues a run directory from its latest snapshot; ``max_steps`` stops after that many steps in
    this call (with a snapshot). ``hooks`` are evaluation callables ``hook(generator=, text_encoder=, vocab=,
    step=, device=) -> {name: value}`` run with the periodic evaluation on rank 0.
    """
    trainer = GANTrainer(config, runs_root, resume, hooks)
    return trainer.run(max_steps)


def _provenance(config: GANRunConfig) -> dict[str, Any]:
    """What an exported model records about its training data and DAMSM (the evaluator's defaults)."""
    d = config.data
    out: dict[str, Any] = {
        "damsm": str(Path(config.damsm).resolve()) if config.damsm else None,
        "data": {"kind": d.kind, "root": str(Path(d.root).resolve()), "image_size": d.image_size,
                 "words_num": d.words_num}}
    if d.text_embeddings:  # the generator takes precomputed embeddings, not the text encoder's: no free text
        out["condition"] = embedding_condition(d.text_embeddings)
        out["data"]["text_embeddings"] = d.text_embeddings
    return out


def embedding_condition(filename: str) -> str:
    """The ``condition`` recorded for a model trained on precomputed embeddings (e.g. ``char-cnn-rnn``)."""
    stem = Path(filename).name.lower()
    return "char-cnn-rnn" if "char-cnn-rnn" in stem else stem


def export_run(run_dir: str | Path, out: str | Path, *, snapshot: str | None = None,
               use_ema: bool = True, discriminator: bool = True, image_encoder: bool = False) -> Path:
    """Export a model directory from a run's snapshot (its latest by default), without training.

    ``discriminator=False`` leaves the discriminator out (a smaller directory that samples and evaluates the
    same); ``image_encoder=True`` adds the DAMSM image encoder, so that R-precision needs nothing but the model
    directory (``t2igan evaluate`` uses a bundled image encoder with the model's own text encoder).
    """
    run_dir = Path(run_dir)
    config = from_dict(GANRunConfig, read_json(run_dir / "run_config.json"),
                       source=str(run_dir / "run_config.json"))
    snaps = SnapshotManager(run_dir)
    snap = snaps.dir / snapshot if snapshot else snaps.latest()
    if snap is None or not snap.is_dir():
        raise ResumeError(f"{run_dir}: snapshot {snapshot or 'latest'} not found in {snaps.dir}")
    damsm = _load_damsm(config.damsm)
    G, D, objective = build_networks(config, damsm)
    name = "generator_ema" if use_ema and (snap / "generator_ema.safetensors").is_file() else "generator"
    load_state_strict(G, load_state_dict_file(snap / f"{name}.safetensors"), source=str(snap))
    components: dict[str, ModelBase] = {"generator": G, "text_encoder": damsm.text_encoder}
    if discriminator:
        components["discriminator"] = D
    if image_encoder:
        components["image_encoder"] = damsm.image_encoder
    for part in ("text_encoder", "image_encoder", "discriminator"):  # fine-tuned encoders are in the snapshot
        if part in components and (snap / f"{part}.safetensors").is_file():
            load_state_strict(components[part], load_state_dict_file(snap / f"{part}.safetensors"),
                              source=str(snap))
    st = load_trainer_state(snap / "trainer_state.pt")
    return write_model_dir(out, config.family, components, damsm.vocab, words_num=config.data.words_num,
                           **_provenance(config),
                           trained={"run": str(run_dir.resolve()), "step": int(st["step"]), "epoch": int(st["epoch"]),
                                    "ema": name == "generator_ema", "snapshot": snap.name})
