"""StackGAN's training algorithm (Zhang et al., ICCV 2017) as StackGAN-Pytorch's ``code/trainer.py`` runs it.

Per step: the generator's image, CA mean ``mu`` and log-variance (stage II: from the frozen Stage-I image);
the discriminator conditions on ``mu`` (detached), not on the text embedding. With binary cross-entropy on the
sigmoid outputs, ``real = BCE(cond(D(x), mu), 1)``, ``wrong = BCE(cond(D(x[:-1]), mu[1:]), 0)``,
``fake = BCE(cond(D(G), mu), 0)``::

    stage I:  errD = real + (fake + wrong) / 2
    stage II: errD = (real + BCE(uncond(D(x)), 1)) / 2 + (fake + wrong + BCE(uncond(D(G)), 0)) / 3
    errG = BCE(cond(D(G), mu), 1) [+ BCE(uncond(D(G)), 1) in stage II] + kl_weight * KL(mu, logvar)

The condition is the batch's precomputed ``text_embeddings`` (StackGAN's char-CNN-RNN embeddings, with
``data.text_embeddings``) or else the DAMSM sentence embedding. Adam 2e-4, betas (0.5, 0.999) for the discriminator and the generator's trainable parameters (stage II leaves
``STAGE1_G`` out); both learning rates halve every ``lr_decay_epochs`` epochs (20). KL weight 2.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from t2igan.config import ConfigBase
from t2igan.losses.gan import bce_prob, kl_loss
from t2igan.objectives.base import (
    OBJECTIVES,
    Networks,
    Objective,
    OptimizerSpec,
    Phase,
    StepContext,
    frozen_condition,
)

__all__ = ["StackGANObjectiveConfig", "StackGANObjective"]


@dataclass
class StackGANObjectiveConfig(ConfigBase):
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    kl_weight: float = 2.0  # TRAIN.COEFF.KL
    lr_decay_epochs: int = 20  # TRAIN.LR_DECAY_EPOCH: both rates halve every this many epochs (0: never)
    lr_decay: float = 0.5

    def __post_init__(self) -> None:
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise ValueError("lr_g and lr_d must be positive")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must not be negative, got {self.kl_weight}")
        if self.lr_decay_epochs < 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("lr_decay_epochs must be >= 0 and lr_decay in (0, 1]")


def _stage2(generator: nn.Module) -> bool:
    return hasattr(generator, "STAGE1_G")


def _generator_params(nets: Networks) -> list[nn.Parameter]:
    """Stage II trains everything but the embedded Stage-I generator (the official ``requires_grad`` filter)."""
    g = nets.generator
    frozen = {id(p) for p in g.STAGE1_G.parameters()} if _stage2(g) else set()
    return [p for p in g.parameters() if id(p) not in frozen]


class StackGANObjective(Objective):
    config_class = StackGANObjectiveConfig
    config: StackGANObjectiveConfig
    accepts_text_embeddings = True

    def _factor(self, epoch: int) -> float:
        c = self.config
        return c.lr_decay ** (epoch // c.lr_decay_epochs) if c.lr_decay_epochs else 1.0

    def optimizers(self) -> dict[str, OptimizerSpec]:
        c = self.config
        return {"G": OptimizerSpec(("generator",), c.lr_g, c.betas, params=_generator_params,
                                   lr_factor=self._factor),
                "D": OptimizerSpec(("discriminator",), c.lr_d, c.betas, lr_factor=self._factor)}

    def phases(self) -> list[Phase]:
        return [Phase("Dmain", "D"), Phase("Gmain", "G")]

    def needs_image_encoder(self) -> bool:
        return False

    def begin(self, nets: Networks, ctx: StepContext) -> None:
        b = ctx.batch
        if "text_embeddings" in b:  # the official condition: precomputed char-CNN-RNN embeddings
            sent = b["text_embeddings"].float()
        else:  # trained here on any dataset: the frozen DAMSM text encoder's sentence embedding
            sent = frozen_condition(nets, b).sent_emb
        G = nets.generator
        nz = G.config.nz
        if _stage2(G):
            c1 = G.STAGE1_G.config.cond_dim
            _, fake, mu, logvar = G(ctx.noise[:, :nz], sent, ctx.noise[:, nz:nz + c1], ctx.noise[:, nz + c1:])
        else:
            fake, mu, logvar = G(ctx.noise[:, :nz], sent, ctx.noise[:, nz:])
        ctx.values.update(fake=fake, mu=mu, logvar=logvar)

    def loss(self, phase: str, nets: Networks,
             ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v = ctx.values
        D = nets.discriminator
        mu = v["mu"].detach()
        if phase == "Dmain":
            real_f = D.features(ctx.batch["images"])
            fake_f = D.features(v["fake"].detach())
            cond_real, unc_real = D.heads(real_f, mu)
            cond_fake, unc_fake = D.heads(fake_f, mu)
            real = bce_prob(cond_real, 1.0)
            fake = bce_prob(cond_fake, 0.0)
            wrong = bce_prob(D.heads(real_f[:-1], mu[1:])[0], 0.0)
            if unc_real is None:
                err = real + (fake + wrong) / 2
            else:
                err = (real + bce_prob(unc_real, 1.0)) / 2 + (fake + wrong + bce_prob(unc_fake, 0.0)) / 3
            return err, {"d/loss": err.detach(), "d/real": real.detach(), "d/fake": fake.detach(),
                         "d/wrong": wrong.detach()}
        if phase == "Gmain":
            cond, unc = D.heads(D.features(v["fake"]), mu)
            adv = bce_prob(cond, 1.0) + (bce_prob(unc, 1.0) if unc is not None else 0.0)
            kl = kl_loss(v["mu"], v["logvar"])
            loss = adv + self.config.kl_weight * kl
            return loss, {"g/adv": adv.detach(), "g/kl": kl.detach(), "g/loss": loss.detach()}
        raise KeyError(f"unknown phase {phase!r}")


OBJECTIVES.register("stackgan", StackGANObjective)
