"""Adversarial losses. The target-aware GANs (DF-GAN, SSA-GAN): hinge terms and the matching-aware gradient
penalty (Tao et al., "DF-GAN", CVPR 2022, Eqs. 1-2; the same losses in Liao et al., "SSA-GAN", CVPR 2022).
AttnGAN and StackGAN: binary cross-entropy on the discriminators' sigmoid outputs and the conditioning
augmentation's KL term.

All functions are pure and compute in float32 whatever the dtype of their inputs (mixed-precision forwards
hand bf16/fp16 logits and gradients here; the losses and penalties stay in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["HingeDLoss", "hinge_d_loss", "hinge_g_loss", "ma_gradient_penalty", "mismatched", "bce_prob",
           "kl_loss"]

_PROB_EPS = 1e-7


@dataclass(frozen=True)
class HingeDLoss:
    total: torch.Tensor
    real: torch.Tensor
    fake: torch.Tensor
    mismatch: torch.Tensor


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                 mismatch_logits: torch.Tensor) -> HingeDLoss:
    """``E[relu(1 - D(x, s))] + (E[relu(1 + D(G(z, s), s))] + E[relu(1 + D(x, s'))]) / 2``.

    ``real_logits`` are real images with their captions, ``fake_logits`` generated images with the captions
    they were made from, ``mismatch_logits`` real images with captions of other items (each [B] or [B, 1]).
    """
    real = F.relu(1.0 - real_logits.float()).mean()
    fake = F.relu(1.0 + fake_logits.float()).mean()
    mismatch = F.relu(1.0 + mismatch_logits.float()).mean()
    return HingeDLoss(real + 0.5 * (fake + mismatch), real, fake, mismatch)


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E[D(G(z, s), s)]``."""
    return -fake_logits.float().mean()


def ma_gradient_penalty(grad_image: torch.Tensor, grad_sent: torch.Tensor, k: float = 2.0,
                        p: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Matching-aware gradient penalty ``k * mean_i(||[grad_x_i, grad_s_i]||_2 ** p)``.

    ``grad_image`` [B, ...] and ``grad_sent`` [B, D] are the gradients of ``D(x, s)`` (real images, matching
    sentences) with respect to the image and the sentence embedding, taken with ``create_graph=True``.
    Returns ``(penalty, mean gradient norm)``; the norm is detached, for logging.
    """
    if grad_image.shape[0] != grad_sent.shape[0]:
        raise ValueError(f"gradients of {grad_image.shape[0]} images but {grad_sent.shape[0]} sentences")
    g = torch.cat([grad_image.float().flatten(1), grad_sent.float().flatten(1)], dim=1)  # [B, N]
    sq = g.pow(2).sum(dim=1)  # [B] squared norms
    # ||g||^p as (||g||^2)^(p/2): the same value, without sqrt's infinite derivative at a zero gradient
    return k * sq.pow(p / 2).mean(), sq.detach().sqrt().mean()


def mismatched(x: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """The batch rolled by ``shift`` along dim 0: item ``i`` gets the condition of item ``i + shift`` (mod B)."""
    if x.shape[0] < 2:
        raise ValueError("mismatched pairs need a batch of at least 2")
    return torch.roll(x, shifts=-shift, dims=0)


def bce_prob(prob: torch.Tensor, target: float) -> torch.Tensor:
    """``nn.BCELoss`` of sigmoid outputs against a constant label, in float32 outside autocast.

    The AttnGAN and StackGAN discriminator heads end in a sigmoid, as the official code's (``nn.BCELoss`` on
    probabilities). Probabilities are clamped to [1e-7, 1 - 1e-7], so a saturated head gives a large finite loss
    (BCELoss clamps the log at -100 instead).
    """
    with torch.autocast(prob.device.type, enabled=False):
        p = prob.float().clamp(_PROB_EPS, 1.0 - _PROB_EPS)
        return F.binary_cross_entropy(p, torch.full_like(p, float(target)))


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) as the official code writes it: ``-0.5 * mean(1 + logvar - mu^2 - e^logvar)``
    (a mean over the batch and the dimensions)."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.mean(1.0 + logvar - mu.pow(2) - logvar.exp())
