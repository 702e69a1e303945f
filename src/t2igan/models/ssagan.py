"""SSA-GAN generator and discriminator.

Liao, Hu, Bao, Yang, Rosenhahn: "Text to Image Generation with Semantic-Spatial Aware GAN", CVPR 2022.

The generator maps noise to a 4x4 map and refines it with a chain of SSACN blocks (semantic-spatial aware
conditional normalisation): each block batch-normalises its input and modulates it with a per-channel scale
and shift predicted from the sentence embedding, weighted at every pixel by a soft mask that says where the
text should act. The masks are predicted from the features themselves, without mask supervision.

This implementation follows the official code (``wtliao/text2image``, ``model.py``) where it differs from the
paper figures, so that the released checkpoints load key for key (after stripping a ``module.`` prefix) and
reproduce its outputs:

* the mask used by block ``k`` is predicted by block ``k-1`` (by the generator's own ``conv_mask`` from the
  ``fc`` output for block 0) from that block's output *before* upsampling; its logits are then upsampled
  bilinearly (``align_corners=True``) and passed through a sigmoid;
* upsampling (nearest, x2) happens between blocks, in the generator, not inside a block;
* a block returns ``shortcut(x) + gamma * residual(x)`` with a learnable scalar ``gamma`` (0 at start), and
  has two modulated normalisations, named ``affine0`` and ``affine2`` as in the official keys;
* ``formulation="official"`` modulates as ``(gamma_s * m + 1) * BN(x) + beta_s * m``; ``"paper"`` as
  ``m * (gamma_s * BN(x) + beta_s)`` (the mask weighting the whole modulated output).

The discriminator is the DF-GAN (2020) discriminator that SSA-GAN uses: a 3x3 stem, residual down-blocks to
4x4 with 16*ndf channels, and a sentence-conditioned head ``COND_DNET`` evaluated inside ``forward``.

Image sizes 64, 128 and 256 are supported. At 256 the generator has 7 blocks with the official channel plan
(8g,8g), (8g,8g), (8g,8g), (8g,8g), (8g,4g), (4g,2g), (2g,g); smaller sizes keep the *first* 6 (128 px,
last width 2g) or 5 (64 px, last width 4g) blocks. The discriminator likewise keeps its first 6 / 5 / 4
down-blocks, so its features are always [B, 16*ndf, 4, 4].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.config import ConfigBase
from t2igan.models.base import GeneratorBase, ModelBase, TextCondition
from t2igan.models.layers import (
    AffineMLP,
    ConditionalHead,
    OneWayDiscriminator,
    ResDownBlock,
    TargetAwareDiscriminatorConfig,
    check_image_size,
    check_positive,
    grouped_block_modulations,
    in_format_of,
    num_doublings,
)

__all__ = [
    "SSACNAffine",
    "SSACNBlock",
    "SSAGANDiscriminator",
    "SSAGANDiscriminatorConfig",
    "SSAGANGenerator",
    "SSAGANGeneratorConfig",
    "ssagan_discriminator_channels",
    "ssagan_generator_channels",
]

Formulation = Literal["official", "paper"]
_FORMULATIONS: tuple[str, ...] = ("official", "paper")


def ssagan_generator_channels(ngf: int, image_size: int) -> list[tuple[int, int]]:
    """(in, out) widths of the SSACN blocks: the first ``log2(size) - 1`` of the 256-px plan."""
    plan = [(8 * ngf, 8 * ngf)] * 4 + [(8 * ngf, 4 * ngf), (4 * ngf, 2 * ngf), (2 * ngf, ngf)]
    return plan[: num_doublings(image_size) + 1]


def ssagan_discriminator_channels(ndf: int, image_size: int) -> list[tuple[int, int]]:
    """(in, out) widths of the down-blocks: the first ``log2(size) - 2`` of the 256-px plan."""
    plan = [(ndf, 2 * ndf), (2 * ndf, 4 * ndf), (4 * ndf, 8 * ndf), (8 * ndf, 16 * ndf),
            (16 * ndf, 16 * ndf), (16 * ndf, 16 * ndf)]
    return plan[: num_doublings(image_size)]


# ================================================================================================ generator


@dataclass
class SSAGANGeneratorConfig(ConfigBase):
    """SSA-GAN generator settings; the defaults are the released CUB/COCO models (``TRAIN.NF: 64``)."""

    ngf: int = 64
    nz: int = 100
    cond_dim: int = 256
    image_size: int = 256
    mask_hidden: int = 100
    formulation: Formulation = "official"

    def __post_init__(self) -> None:
        check_positive(ngf=self.ngf, nz=self.nz, cond_dim=self.cond_dim, mask_hidden=self.mask_hidden)
        check_image_size(self.image_size)
        if self.formulation not in _FORMULATIONS:
            raise ValueError(f"formulation must be one of {', '.join(_FORMULATIONS)}, got {self.formulation!r}")

    @property
    def num_blocks(self) -> int:
        return num_doublings(self.image_size) + 1


def _mask_predictor(in_channels: int, hidden: int) -> nn.Sequential:
    """Conv3x3 -> BN -> ReLU -> Conv1x1 to one channel: mask *logits* [B, 1, H, W] (keys ``.0``, ``.1``, ``.3``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, 1, 1),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, 1, 1, 1, 0),
    )


class SSACNAffine(nn.Module):
    """Mask-weighted, sentence-conditioned batch normalisation (the SSACN modulation).

    ``forward(x [B, C, H, W], sent [B, cond_dim], mask [B, 1, H, W]) -> [B, C, H, W]`` with
    ``gamma_s = fc_gamma(sent)``, ``beta_s = fc_beta(sent)`` (each [B, C]) and ``BN`` without learned affine:

    * ``official``: ``(gamma_s * m + 1) * BN(x) + beta_s * m`` -- the last MLP layers start at zero, so the
      block starts as plain batch normalisation;
    * ``paper``: ``m * (gamma_s * BN(x) + beta_s)`` -- ``fc_gamma``'s last bias starts at 1 instead, so the
      block starts as ``m * BN(x)`` rather than as zero.
    """

    def __init__(self, num_features: int, cond_dim: int, formulation: Formulation = "official") -> None:
        super().__init__()
        if formulation not in _FORMULATIONS:
            raise ValueError(f"formulation must be one of {', '.join(_FORMULATIONS)}, got {formulation!r}")
        self.formulation = formulation
        self.batch_norm2d = nn.BatchNorm2d(num_features, affine=False)
        gamma_bias = 1.0 if formulation == "paper" else 0.0
        self.fc_gamma = AffineMLP(cond_dim, cond_dim, num_features, last_bias=gamma_bias)
        self.fc_beta = AffineMLP(cond_dim, cond_dim, num_features, last_bias=0.0)

    def forward(self, x: torch.Tensor, sent_emb: torch.Tensor, mask: torch.Tensor,
                gamma_beta: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``gamma_beta``: the two MLPs' outputs ([B, C] each) when already computed (fused inference)."""
        h = self.batch_norm2d(x)  # [B, C, H, W]
        gamma, beta = gamma_beta if gamma_beta is not None else (self.fc_gamma(sent_emb), self.fc_beta(sent_emb))
        gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]  # [B, C, 1, 1]
        t = torch.addcmul(beta, gamma, h)  # gamma * h + beta, one pass, [B, C, H, W]
        if self.formulation == "official":
            return torch.addcmul(h, mask, t)  # h + m * (gamma*h + beta) == (gamma*m + 1) * h + beta*m
        return t * mask  # m * (gamma * h + beta)


class SSACNBlock(nn.Module):
    """One SSACN generator block at a fixed resolution (upsampling happens outside, in the generator).

    ``forward(x [B, in, H, W], sent [B, cond_dim], mask [B, 1, H, W])`` returns
    ``(out [B, out, H, W], next_mask_logits [B, 1, H, W] or None)`` where
    ``out = shortcut(x) + gamma * c2(relu(affine2(c1(relu(affine0(x))))))`` (``shortcut`` a 1x1 conv
    ``c_sc`` when the width changes) and the mask logits for the next block come from ``conv_mask(out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, *, predict_mask: bool,
                 mask_hidden: int = 100, formulation: Formulation = "official") -> None:
        super().__init__()
        self.learnable_sc = in_channels != out_channels
        self.predict_mask = predict_mask
        self.gamma = nn.Parameter(torch.zeros(1))
        self.c1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.c2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.affine0 = SSACNAffine(in_channels, cond_dim, formulation)
        self.affine2 = SSACNAffine(out_channels, cond_dim, formulation)
        if self.learnable_sc:
            self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
        if predict_mask:
            self.conv_mask = _mask_predictor(out_channels, mask_hidden)

    def affine_mlps(self) -> list[AffineMLP]:
        """The MLPs in the order :meth:`forward` takes their outputs as ``params``."""
        return [self.affine0.fc_gamma, self.affine0.fc_beta, self.affine2.fc_gamma, self.affine2.fc_beta]

    def residual(self, x: torch.Tensor, sent_emb: torch.Tensor, mask: torch.Tensor,
                 params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        p0, p2 = (None, None) if params is None else ((params[0], params[1]), (params[2], params[3]))
        h = F.relu(self.affine0(x, sent_emb, mask, p0), inplace=True)  # [B, in, H, W]
        h = F.relu(self.affine2(self.c1(h), sent_emb, mask, p2), inplace=True)  # [B, out, H, W]
        return self.c2(h)  # [B, out, H, W]

    def forward(self, x: torch.Tensor, sent_emb: torch.Tensor, mask: torch.Tensor,
                params: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``params``: the outputs of :meth:`affine_mlps` for ``sent_emb`` when already computed (fused inference)."""
        short = self.c_sc(x) if self.learnable_sc else x  # [B, out, H, W]
        out = torch.addcmul(short, self.gamma, self.residual(x, sent_emb, mask, params))  # short + gamma * residual
        next_logits = self.conv_mask(out) if self.predict_mask else None  # [B, 1, H, W]
        return out, next_logits


class SSAGANGenerator(GeneratorBase):
    """SSA-GAN generator: ``(noise [B, nz], sent_emb [B, cond_dim]) -> (image [B, 3, S, S], masks)``.

    ``image`` is in [-1, 1] (tanh); ``masks`` is the list of the sigmoid masks the blocks used, one per block,
    [B, 1, 4, 4], [B, 1, 8, 8], ... up to [B, 1, S, S] (7 masks at 256 px). State-dict keys equal those of
    the official ``NetG(ngf, nz)``: ``conv_mask.*``, ``fc.*``, ``block{k}.*``, ``conv_img.*``.
    """

    config_class: ClassVar[type[ConfigBase]] = SSAGANGeneratorConfig
    config: SSAGANGeneratorConfig

    def __init__(self, config: SSAGANGeneratorConfig | None = None) -> None:
        super().__init__(config if config is not None else SSAGANGeneratorConfig())
        c = self.config
        plan = ssagan_generator_channels(c.ngf, c.image_size)
        self.conv_mask = _mask_predictor(8 * c.ngf, c.mask_hidden)
        self.fc = nn.Linear(c.nz, 8 * c.ngf * 4 * 4)
        self.block_names: tuple[str, ...] = tuple(f"block{k}" for k in range(len(plan)))
        for k, (fin, fout) in enumerate(plan):
            block = SSACNBlock(fin, fout, c.cond_dim, predict_mask=k < len(plan) - 1,
                               mask_hidden=c.mask_hidden, formulation=c.formulation)
            self.add_module(self.block_names[k], block)
        out_channels = plan[-1][1]
        self.conv_img = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_channels, 3, 3, 1, 1),
            nn.Tanh(),
        )

    @property
    def blocks(self) -> list[SSACNBlock]:
        return [getattr(self, name) for name in self.block_names]

    def forward(self, noise: torch.Tensor, sent_emb: torch.Tensor, *,
                fused: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``fused``: evaluate every block's conditioning MLPs together first (:func:`grouped_block_modulations`; the
        same outputs to float rounding, faster with frozen weights, slower in eager mode)."""
        c = self.config
        if noise.dim() != 2 or noise.shape[1] != c.nz:
            raise ValueError(f"noise must be [batch, {c.nz}], got shape {tuple(noise.shape)}")
        if sent_emb.shape != (noise.shape[0], c.cond_dim):
            raise ValueError(f"sent_emb must be [{noise.shape[0]}, {c.cond_dim}], got shape {tuple(sent_emb.shape)}")
        out = self.fc(noise).view(noise.shape[0], 8 * c.ngf, 4, 4)  # [B, 8g, 4, 4]
        out = in_format_of(out, self.conv_img[2].weight)
        logits: torch.Tensor | None = self.conv_mask(out)  # [B, 1, 4, 4]
        masks: list[torch.Tensor] = []
        params: list[Sequence[torch.Tensor] | None] = [None] * len(self.block_names)
        if fused:
            params = grouped_block_modulations(self.blocks, sent_emb)
        for k, block in enumerate(self.blocks):
            if k > 0:
                out = F.interpolate(out, scale_factor=2.0, mode="nearest")  # [B, C, 2H, 2W]
                logits = F.interpolate(logits, size=out.shape[-2:], mode="bilinear", align_corners=True)
            mask = torch.sigmoid(logits)  # [B, 1, H, W]
            masks.append(mask)
            out, logits = block(out, sent_emb, mask, params[k])
        return self.conv_img(out), masks  # [B, 3, S, S]

    @property
    def noise_dim(self) -> int:
        return self.config.nz

    def synthesize(self, noise: torch.Tensor,
                   cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        return self(noise, cond.sent_emb)

    def synthesize_fused(self, noise: torch.Tensor,
                         cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        return self(noise, cond.sent_emb, fused=True)

    def feature_bytes_per_image(self) -> int:
        plan = ssagan_generator_channels(self.config.ngf, self.config.image_size)
        return 4 * max(fin * (4 << k) ** 2 for k, (fin, _) in enumerate(plan))  # block k's input, (4 * 2^k)^2


# ================================================================================================ discriminator


@dataclass
class SSAGANDiscriminatorConfig(TargetAwareDiscriminatorConfig):
    """SSA-GAN discriminator settings (the DF-GAN 2020 discriminator); defaults are the released models."""

    ndf: int = 64


class SSAGANDiscriminator(OneWayDiscriminator, ModelBase):
    """SSA-GAN discriminator: features [B, 16*ndf, 4, 4] and sentence-conditioned logits [B].

    ``forward(image)`` returns the features; ``forward(image, sent_emb)`` the logits, computed by the
    module's own ``COND_DNET`` inside ``forward`` (so a DDP wrapper sees the whole computation);
    ``forward(sent_emb=s, features=f)`` the logits of precomputed features (e.g. mismatched pairs) through the
    same entry point. :meth:`features` and :meth:`logits` are the two halves. Keys equal those of the
    official ``NetD(ndf)``: ``conv_img.*``, ``block{j}.*``, ``COND_DNET.joint_conv.{0,2}.weight``.
    """

    config_class: ClassVar[type[ConfigBase]] = SSAGANDiscriminatorConfig
    config: SSAGANDiscriminatorConfig

    def __init__(self, config: SSAGANDiscriminatorConfig | None = None) -> None:
        super().__init__(config if config is not None else SSAGANDiscriminatorConfig())
        c = self.config
        plan = ssagan_discriminator_channels(c.ndf, c.image_size)
        self.conv_img = nn.Conv2d(3, c.ndf, 3, 1, 1)
        self.block_names: tuple[str, ...] = tuple(f"block{j}" for j in range(len(plan)))
        for name, (fin, fout) in zip(self.block_names, plan):
            self.add_module(name, ResDownBlock(fin, fout))
        self.feature_channels = plan[-1][1]  # 16 * ndf
        self.COND_DNET = ConditionalHead(self.feature_channels, c.cond_dim, 2 * c.ndf)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``image [B, 3, S, S] -> features [B, 16*ndf, 4, 4]``."""
        size = self.config.image_size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image must be [batch, 3, {size}, {size}], got shape {tuple(image.shape)}")
        out = self.conv_img(image)  # [B, ndf, S, S]
        for name in self.block_names:
            out = getattr(self, name)(out)  # halves the resolution
        return out

    def logits(self, features: torch.Tensor, sent_emb: torch.Tensor) -> torch.Tensor:
        """``(features [B, 16*ndf, 4, 4], sent_emb [B, cond_dim]) -> logits [B]``."""
        return self.COND_DNET(features, sent_emb)
