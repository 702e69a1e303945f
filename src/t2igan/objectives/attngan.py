"""AttnGAN's training algorithm (Xu et al., CVPR 2018) as the official ``code/trainer.py`` runs it.

Per step: one generator forward (every stage's image, CA mean and log-variance, word attention); then every
stage's discriminator on real (the batch resized to the stage's size), generated (detached) and wrong pairs
(image ``i`` with caption ``i + 1``, the last image left out), with binary cross-entropy on the sigmoid outputs::

    errD_i = (BCE(uncond(real), 1) + BCE(cond(real), 1)) / 2
             + (BCE(uncond(fake), 0) + BCE(cond(fake), 0) + BCE(cond(wrong), 0)) / 3

(``cond(real) + (cond(fake) + cond(wrong)) / 2`` without unconditional heads). The official code keeps one Adam
per stage; their parameters are disjoint and Adam is elementwise, so one optimizer over the sum is the same update.
Then the generator: ``sum_i [BCE(uncond(D_i(x_i)), 1) + BCE(cond(D_i(x_i)), 1)] + lambda * DAMSM(last image) +
kl_weight * KL``, with DAMSM's word and sentence losses (gammas 4, 5, 10; same-class pairs masked) from the frozen
encoders. Adam 2e-4, betas (0.5, 0.999), no schedule; the official code exports an EMA (0.999) of G, which the
``attngan-*`` presets turn on (``train.ema``). Defaults are the birds config (lambda 5; COCO: 50).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from t2igan.config import ConfigBase
from t2igan.losses.damsm import damsm_loss
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

__all__ = ["AttnGANObjectiveConfig", "AttnGANObjective", "stage_images"]


@dataclass
class AttnGANObjectiveConfig(ConfigBase):
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    damsm_weight: float = 5.0  # TRAIN.SMOOTH.LAMBDA: 5 birds, 50 COCO, 1 AttnDCGAN
    kl_weight: float = 1.0
    damsm_gamma1: float = 4.0
    damsm_gamma2: float = 5.0
    damsm_gamma3: float = 10.0
    damsm_class_mask: bool = True

    def __post_init__(self) -> None:
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise ValueError("lr_g and lr_d must be positive")
        if self.damsm_weight < 0 or self.kl_weight < 0:
            raise ValueError("damsm_weight and kl_weight must not be negative")


def stage_images(images: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """The real batch at every stage's size (bilinear with antialiasing, as the official ``Scale`` of the crop)."""
    out = []
    for size in sizes:
        if images.shape[-1] == size:
            out.append(images)
        else:
            out.append(F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                     antialias=True))
    return out


class AttnGANObjective(Objective):
    config_class = AttnGANObjectiveConfig
    config: AttnGANObjectiveConfig

    def optimizers(self) -> dict[str, OptimizerSpec]:
        c = self.config
        return {"G": OptimizerSpec(("generator",), c.lr_g, c.betas),
                "D": OptimizerSpec(("discriminator",), c.lr_d, c.betas)}

    def phases(self) -> list[Phase]:
        return [Phase("Dmain", "D"), Phase("Gmain", "G")]

    def needs_image_encoder(self) -> bool:
        return self.config.damsm_weight > 0

    def begin(self, nets: Networks, ctx: StepContext) -> None:
        cond = frozen_condition(nets, ctx.batch)
        G = nets.generator
        z = G.config.z_dim
        out = G(ctx.noise[:, :z], cond.sent_emb, cond.words_emb, cond.word_mask, ctx.noise[:, z:])
        ctx.values.update(cond=cond, out=out, sizes=tuple(img.shape[-1] for img in out.images))

    def loss(self, phase: str, nets: Networks,
             ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if phase == "Dmain":
            return self._d_loss(nets, ctx)
        if phase == "Gmain":
            return self._g_loss(nets, ctx)
        raise KeyError(f"unknown phase {phase!r}")

    def _stages(self, nets: Networks):
        D = nets.discriminator
        return list(D.stages) if hasattr(D, "stages") else [D]

    def _d_loss(self, nets: Networks, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v = ctx.values
        sent = v["cond"].sent_emb
        reals = stage_images(ctx.batch["images"], v["sizes"])
        total = sent.new_zeros(())
        stats: dict[str, torch.Tensor] = {}
        for i, (D, real, fake) in enumerate(zip(self._stages(nets), reals, v["out"].images)):
            real_f = D.features(real)
            fake_f = D.features(fake.detach())
            cond_real = bce_prob(D.cond_logits(real_f, sent), 1.0)
            cond_fake = bce_prob(D.cond_logits(fake_f, sent), 0.0)
            cond_wrong = bce_prob(D.cond_logits(real_f[:-1], sent[1:]), 0.0)
            if D.UNCOND_DNET is not None:
                err = ((bce_prob(D.uncond_logits(real_f), 1.0) + cond_real) / 2
                       + (bce_prob(D.uncond_logits(fake_f), 0.0) + cond_fake + cond_wrong) / 3)
            else:
                err = cond_real + (cond_fake + cond_wrong) / 2
            total = total + err
            stats[f"d/loss{i}"] = err.detach()
        stats["d/loss"] = total.detach()
        return total, stats

    def _g_loss(self, nets: Networks, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        v = ctx.values
        cond, out = v["cond"], v["out"]
        adv = cond.sent_emb.new_zeros(())
        for D, fake in zip(self._stages(nets), out.images):
            f = D.features(fake)
            adv = adv + bce_prob(D.cond_logits(f, cond.sent_emb), 1.0)
            if D.UNCOND_DNET is not None:
                adv = adv + bce_prob(D.uncond_logits(f), 1.0)
        kl = kl_loss(out.mu, out.logvar)
        loss = adv + c.kl_weight * kl
        stats = {"g/adv": adv.detach(), "g/kl": kl.detach()}
        if c.damsm_weight > 0:
            assert nets.image_encoder is not None, "the DAMSM loss needs the DAMSM image encoder"
            regions, code = nets.image_encoder(out.images[-1])
            d = damsm_loss(regions.float(), cond.words_emb, code.float(), cond.sent_emb, ctx.batch["lengths"],
                           ctx.batch["class_ids"] if c.damsm_class_mask else None, gamma1=c.damsm_gamma1,
                           gamma2=c.damsm_gamma2, gamma3=c.damsm_gamma3)
            loss = loss + c.damsm_weight * d.total
            stats["g/damsm"] = d.total.detach()
        stats["g/loss"] = loss.detach()
        return loss, stats


OBJECTIVES.register("attngan", AttnGANObjective)
