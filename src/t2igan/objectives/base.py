"""What a family's training algorithm is, as data the trainer runs without knowing the family.

An :class:`Objective` names its optimizers (:class:`OptimizerSpec`: which networks, learning rate, betas) and
its phases (:class:`Phase`: name, optimizer, interval). Each training step the trainer calls
:meth:`Objective.begin` once (text encoding, the generator's forward), then, for every phase due at this step
and in order: zero the phase optimizer's gradients, call :meth:`Objective.loss` under autocast, backward,
average gradients across processes, step. The objective never calls ``backward`` or ``step``; it returns
``(loss, stats)`` with ``stats`` detached scalar tensors (converted to numbers only when logged).

While a phase runs, only the parameters of its optimizer require gradients (a generator phase computes no
gradients of the discriminator's weights and vice versa); everything trainable requires them during
:meth:`Objective.begin`, so a generator output computed there can be reused by a later generator phase.
Networks that no optimizer names (a frozen text encoder) never require gradients and stay in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from t2igan.config import ConfigBase
from t2igan.models.base import TextCondition
from t2igan.registry import Registry

__all__ = ["Phase", "OptimizerSpec", "Networks", "StepContext", "Objective", "OBJECTIVES", "GradFn",
           "frozen_condition"]

GradFn = Callable[[torch.Tensor, Sequence[torch.Tensor]], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class Phase:
    """One optimisation phase: ``name`` (e.g. 'Dmain', 'Dreg', 'Gmain'), its optimizer and how often it runs.

    ``autocast=False`` keeps the phase in fp32 under mixed precision (gradient penalties: their double backward
    is where low precision hurts, and oneDNN's bf16 convolution double backward crashes with SIGFPE for some
    shapes, e.g. a 64 px discriminator with ndf 16 at batch 24 on one thread, torch 2.15).
    """

    name: str
    optimizer: str
    interval: int = 1
    autocast: bool = True


@dataclass(frozen=True)
class OptimizerSpec:
    """An Adam optimizer over the trainable parameters of the named networks."""

    networks: tuple[str, ...]
    lr: float
    betas: tuple[float, float]
    params: Callable[[Networks], list[nn.Parameter]] | None = None  # default: all of the networks' parameters
    lr_factor: Callable[[int], float] | None = None  # epoch -> multiplier of ``lr`` (None: constant)

    def lr_at(self, epoch: int) -> float:
        return self.lr * (self.lr_factor(epoch) if self.lr_factor is not None else 1.0)


@dataclass
class Networks:
    """The modules a GAN objective works with (never DDP-wrapped: the trainer averages gradients itself)."""

    generator: nn.Module
    discriminator: nn.Module
    text_encoder: nn.Module
    image_encoder: nn.Module | None = None

    def get(self, name: str) -> nn.Module:
        module = getattr(self, name, None)
        if not isinstance(module, nn.Module):
            raise KeyError(f"no network named {name!r}")
        return module


@dataclass
class StepContext:
    """What one training step shares between its phases."""

    batch: dict[str, Any]
    noise: torch.Tensor
    grad: GradFn  # autograd.grad with create_graph=True that is correct under a gradient scaler
    values: dict[str, Any] = field(default_factory=dict)


class Objective:
    """Base of the families' objectives; subclasses set ``config_class`` and implement the methods."""

    config_class: type[ConfigBase] = ConfigBase
    accepts_text_embeddings = False  # conditions on a batch's precomputed "text_embeddings" when present

    def __init__(self, config: ConfigBase | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    def optimizers(self) -> dict[str, OptimizerSpec]:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def begin(self, nets: Networks, ctx: StepContext) -> None:
        """Shared work of a step, stored in ``ctx.values`` (under autocast)."""
        raise NotImplementedError

    def loss(self, phase: str, nets: Networks,
             ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


def frozen_condition(nets: Networks, batch: dict[str, Any]) -> TextCondition:
    """The batch's captions through the text encoder in eval mode (no dropout) and without gradient, as the
    generator's condition (float32, detached); the encoder's own mode is restored."""
    te = nets.text_encoder
    was = te.training
    te.eval()
    with torch.no_grad():
        cond = te.encode(batch["captions"], batch["lengths"]).detached()
    te.train(was)
    return cond


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
