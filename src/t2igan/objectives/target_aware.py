"""The training algorithm of the target-aware one-stage GANs (DF-GAN and SSA-GAN).

Per step (Tao et al., "DF-GAN", CVPR 2022, Sec. 3; Liao et al., "SSA-GAN", CVPR 2022, Sec. 3.4):

* ``Dmain``: hinge loss on real images with their captions, on generated images, and on real images with
  mismatched captions (the batch's sentence embeddings rolled by one): ``real + (fake + mismatch) / 2``;
* the matching-aware gradient penalty ``k * mean(||[grad_x D(x, s), grad_s D(x, s)]||^p)`` on real images and
  their own sentences, either as a second discriminator step ``Dreg`` (``gp_schedule="separate"``, the official
  SSA-GAN and DF-GAN 2020 code: two Adam updates of D per iteration) or added to the ``Dmain`` loss
  (``"combined"``, DF-GAN 2022: one update, reusing the real forward);
* ``Gmain``: ``-D(G(z, s), s)`` plus ``damsm_weight * DAMSM(G(z, s), words, sentence)`` (SSA-GAN: 0.05, 0.1 when
  the text encoder is fine-tuned; DF-GAN: 0);
* ``Emain`` (only with ``finetune_text_encoder``, SSA-GAN's fine-tuning variant): the DAMSM loss of real images
  trains the text encoder and the image encoder's projections with their own Adam; the generator keeps seeing
  detached embeddings of the text encoder in eval mode (no dropout noise in its condition).

The generator's output computed once in :meth:`begin` serves both the discriminator (detached) and the
generator phase, as in the official code. Every constant is a field of :class:`TargetAwareConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from t2igan.config import ConfigBase
from t2igan.losses.damsm import damsm_loss
from t2igan.losses.gan import hinge_d_loss, hinge_g_loss, ma_gradient_penalty, mismatched
from t2igan.objectives.base import Networks, Objective, OptimizerSpec, Phase, StepContext, frozen_condition

__all__ = ["TargetAwareConfig", "TargetAwareObjective"]


@dataclass
class TargetAwareConfig(ConfigBase):
    lr_g: float = 1e-4  # generator Adam learning rate
    lr_d: float = 4e-4  # discriminator Adam learning rate
    betas: tuple[float, float] = (0.0, 0.9)  # both Adams
    gp_weight: float = 2.0  # k of the matching-aware gradient penalty
    gp_power: float = 6.0  # p of the matching-aware gradient penalty
    gp_schedule: Literal["separate", "combined"] = "separate"  # second D step (SSA-GAN) or in the D loss (DF-GAN 2022)
    mismatch_shift: int = 1  # mismatched captions: the batch rolled by this many items
    damsm_weight: float = 0.05  # lambda of DAMSM(fake) in the generator loss (0 disables it)
    damsm_gamma1: float = 5.0
    damsm_gamma2: float = 5.0
    damsm_gamma3: float = 10.0
    damsm_class_mask: bool = True  # same-class captions are not negatives in the DAMSM loss
    finetune_text_encoder: bool = False  # SSA-GAN's fine-tuning variant (an Emain phase)
    lr_e: float = 4e-5  # encoders' Adam learning rate when fine-tuning
    betas_e: tuple[float, float] = (0.0, 0.9)

    def __post_init__(self) -> None:
        for name in ("lr_g", "lr_d", "lr_e"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.gp_weight < 0 or self.damsm_weight < 0:
            raise ValueError("gp_weight and damsm_weight must not be negative")
        if self.gp_schedule not in ("separate", "combined"):
            raise ValueError(f"gp_schedule must be 'separate' or 'combined', got {self.gp_schedule!r}")
        if self.mismatch_shift < 1:
            raise ValueError(f"mismatch_shift must be at least 1, got {self.mismatch_shift}")


class TargetAwareObjective(Objective):
    config_class = TargetAwareConfig
    config: TargetAwareConfig

    def optimizers(self) -> dict[str, OptimizerSpec]:
        c = self.config
        specs = {"G": OptimizerSpec(("generator",), c.lr_g, c.betas),
                 "D": OptimizerSpec(("discriminator",), c.lr_d, c.betas)}
        if c.finetune_text_encoder:
            specs["E"] = OptimizerSpec(("text_encoder", "image_encoder"), c.lr_e, c.betas_e,
                                       params=_encoder_params)
        return specs

    def phases(self) -> list[Phase]:
        c = self.config
        combined = c.gp_schedule == "combined" and c.gp_weight > 0
        phases = [Phase("Dmain", "D", autocast=not combined)]  # penalties run in fp32
        if c.gp_schedule == "separate" and c.gp_weight > 0:
            phases.append(Phase("Dreg", "D", autocast=False))
        phases.append(Phase("Gmain", "G"))
        if c.finetune_text_encoder:
            phases.append(Phase("Emain", "E"))
        return phases

    def needs_image_encoder(self) -> bool:
        return self.config.damsm_weight > 0 or self.config.finetune_text_encoder

    def begin(self, nets: Networks, ctx: StepContext) -> None:
        cond = frozen_condition(nets, ctx.batch)  # the generator's condition never carries dropout noise
        out = nets.generator(ctx.noise, cond.sent_emb)
        fake, masks = out if isinstance(out, tuple) else (out, None)
        ctx.values.update(words=cond.words_emb, sent=cond.sent_emb, fake=fake, masks=masks)

    def loss(self, phase: str, nets: Networks,
             ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if phase == "Dmain":
            return self._d_main(nets, ctx)
        if phase == "Dreg":
            gp, norm = self._penalty(nets, ctx)
            return gp, {"d/gp": gp.detach(), "d/gp_grad_norm": norm}
        if phase == "Gmain":
            return self._g_main(nets, ctx)
        if phase == "Emain":
            return self._e_main(nets, ctx)
        raise KeyError(f"unknown phase {phase!r}")

    def _penalty(self, nets: Networks, ctx: StepContext, *, features: torch.Tensor | None = None,
                 image: torch.Tensor | None = None,
                 sent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """MA-GP on real images and their sentences; reuses a forward whose inputs require grad if given."""
        c = self.config
        if features is None:
            image = ctx.batch["images"].detach().requires_grad_(True)
            sent = ctx.values["sent"].detach().requires_grad_(True)
            logits = nets.discriminator(image, sent)
        else:
            logits = nets.discriminator(features=features, sent_emb=sent)
        assert image is not None and sent is not None
        g_img, g_sent = ctx.grad(logits.float().sum(), (image, sent))
        return ma_gradient_penalty(g_img, g_sent, c.gp_weight, c.gp_power)

    def _d_main(self, nets: Networks, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        D = nets.discriminator
        combined = c.gp_schedule == "combined" and c.gp_weight > 0
        image = ctx.batch["images"].detach()
        sent = ctx.values["sent"]
        if combined:  # the penalty's gradients come from this same real forward
            image = image.requires_grad_(True)
            sent = sent.detach().requires_grad_(True)
        feats = D(image)
        real = D(features=feats, sent_emb=sent)
        mis = D(features=feats, sent_emb=mismatched(sent.detach(), c.mismatch_shift))
        fake = D(ctx.values["fake"].detach().float(), ctx.values["sent"])  # fp32 phases get fp32 inputs
        h = hinge_d_loss(real, fake, mis)
        stats = {"d/loss": h.total.detach(), "d/real": h.real.detach(), "d/fake": h.fake.detach(),
                 "d/mismatch": h.mismatch.detach()}
        loss = h.total
        if combined:
            g_img, g_sent = ctx.grad(real.float().sum(), (image, sent))
            gp, norm = ma_gradient_penalty(g_img, g_sent, c.gp_weight, c.gp_power)
            loss = loss + gp
            stats.update({"d/gp": gp.detach(), "d/gp_grad_norm": norm})
        return loss, stats

    def _damsm(self, nets: Networks, images: torch.Tensor, words: torch.Tensor, sent: torch.Tensor,
               ctx: StepContext):
        c = self.config
        assert nets.image_encoder is not None, "the DAMSM loss needs the DAMSM image encoder"
        regions, code = nets.image_encoder(images)
        return damsm_loss(regions.float(), words.float(), code.float(), sent.float(), ctx.batch["lengths"],
                          ctx.batch["class_ids"] if c.damsm_class_mask else None, gamma1=c.damsm_gamma1,
                          gamma2=c.damsm_gamma2, gamma3=c.damsm_gamma3)

    def _g_main(self, nets: Networks, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        v = ctx.values
        adv = hinge_g_loss(nets.discriminator(v["fake"], v["sent"]))
        loss = adv
        stats = {"g/adv": adv.detach()}
        if c.damsm_weight > 0:
            d = self._damsm(nets, v["fake"], v["words"], v["sent"], ctx)
            loss = loss + c.damsm_weight * d.total
            stats["g/damsm"] = d.total.detach()
        stats["g/loss"] = loss.detach()
        return loss, stats

    def _e_main(self, nets: Networks, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        te = nets.text_encoder
        was = te.training
        te.train()  # DAMSM training of the text encoder, with its word dropout
        words, sent = te(ctx.batch["captions"], ctx.batch["lengths"])
        te.train(was)
        d = self._damsm(nets, ctx.batch["images"], words, sent, ctx)
        return d.total, {"e/damsm": d.total.detach()}


def _encoder_params(nets: Networks) -> list[torch.nn.Parameter]:
    """The fine-tuned parameters: the whole text encoder and the image encoder's projections (trunk frozen)."""
    params = list(nets.text_encoder.parameters())
    if nets.image_encoder is not None:
        params += list(nets.image_encoder.projection_parameters())
    return params
