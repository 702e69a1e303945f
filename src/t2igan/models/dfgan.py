"""DF-GAN generator and discriminator (the CVPR 2022 version).

Tao, Tang, Wu, Jing, Bao, Xu: "DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis", CVPR 2022.

The generator is a single stage: noise -> 4x4 map -> up-blocks, each fusing the text into the image features
with stacked affine transformations (the deep text-image fusion block, DFBlock) whose scale and shift are
predicted from ``cat(noise, sentence)``. There is no normalisation layer. The discriminator (target-aware, with
the matching-aware gradient penalty in the objective) is a stem + residual down-blocks (``NetD``) followed by
a sentence-conditioned head (``NetC``).

Module layout and key names follow the official code (``tobran/DF-GAN``, ``code/models/GAN.py``), so released
``netG`` / ``netD`` / ``netC`` state dicts load without renaming; channel plans follow its
``get_G_in_out_chs`` / ``get_D_in_out_chs`` for every image size (64, 128, 256):

* generator widths ``ngf * min(2**i, 8)`` for ``i < log2(S) - 1``, reversed: at 256 px
  (8g,8g), (8g,8g), (8g,8g), (8g,4g), (4g,2g), (2g,g); smaller sizes drop *leading* (8g,8g) blocks, so the
  last width is always ``ngf``;
* discriminator widths the same list unreversed: at 256 px (d,2d), (2d,4d), (4d,8d), (8d,8d), (8d,8d), (8d,8d);
  smaller sizes drop trailing blocks, so the features are always [B, 8*ndf, 4, 4].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

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
    "DFBlock",
    "DFGANAffine",
    "DFGANDiscriminator",
    "DFGANDiscriminatorConfig",
    "DFGANGenerator",
    "DFGANGeneratorConfig",
    "DFGANNetC",
    "DFGANNetD",
    "DFGANUpBlock",
    "dfgan_discriminator_channels",
    "dfgan_generator_channels",
]


def _widths(nf: int, image_size: int) -> list[int]:
    return [nf * min(2**i, 8) for i in range(num_doublings(image_size) + 1)]  # [nf, 2nf, 4nf, 8nf, 8nf, ...]


def dfgan_generator_channels(ngf: int, image_size: int) -> list[tuple[int, int]]:
    """(in, out) widths of the up-blocks (``log2(S) - 2`` of them; the last one outputs ``ngf``)."""
    w = _widths(ngf, image_size)[::-1]
    return list(zip(w[:-1], w[1:]))


def dfgan_discriminator_channels(ndf: int, image_size: int) -> list[tuple[int, int]]:
    """(in, out) widths of the down-blocks (``log2(S) - 2`` of them; the last one outputs ``8 * ndf``)."""
    w = _widths(ndf, image_size)
    return list(zip(w[:-1], w[1:]))


# ================================================================================================ generator


@dataclass
class DFGANGeneratorConfig(ConfigBase):
    """DF-GAN generator settings; defaults are the released CUB/COCO models (``nf: 32``, 256 px)."""

    ngf: int = 32
    nz: int = 100
    cond_dim: int = 256
    image_size: int = 256

    def __post_init__(self) -> None:
        check_positive(ngf=self.ngf, nz=self.nz, cond_dim=self.cond_dim)
        check_image_size(self.image_size)

    @property
    def num_blocks(self) -> int:
        return num_doublings(self.image_size)


class DFGANAffine(nn.Module):
    """Channel-wise affine modulation: ``(x [B, C, H, W], cond [B, D]) -> fc_gamma(cond) * x + fc_beta(cond)``.

    Both MLPs are Linear(D, C) -> ReLU -> Linear(C, C); ``fc_gamma`` starts as the constant 1 and ``fc_beta``
    as 0, so the layer starts as the identity.
    """

    def __init__(self, cond_dim: int, num_features: int) -> None:
        super().__init__()
        self.fc_gamma = AffineMLP(cond_dim, num_features, num_features, last_bias=1.0)
        self.fc_beta = AffineMLP(cond_dim, num_features, num_features, last_bias=0.0)

    def forward(self, x: torch.Tensor, cond: torch.Tensor,
                gamma_beta: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``gamma_beta``: the two MLPs' outputs ([B, C] each) when already computed (fused inference)."""
        gamma, beta = gamma_beta if gamma_beta is not None else (self.fc_gamma(cond), self.fc_beta(cond))
        return gamma[:, :, None, None] * x + beta[:, :, None, None]  # [B, C, H, W]


class DFBlock(nn.Module):
    """Deep fusion block: ``affine0 -> LeakyReLU(0.2) -> affine1 -> LeakyReLU(0.2)``, shape-preserving."""

    def __init__(self, cond_dim: int, num_features: int) -> None:
        super().__init__()
        self.affine0 = DFGANAffine(cond_dim, num_features)
        self.affine1 = DFGANAffine(cond_dim, num_features)

    def affine_mlps(self) -> list[AffineMLP]:
        """The MLPs in the order :meth:`forward` takes their outputs as ``params``."""
        return [self.affine0.fc_gamma, self.affine0.fc_beta, self.affine1.fc_gamma, self.affine1.fc_beta]

    def forward(self, x: torch.Tensor, cond: torch.Tensor,
                params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        p0, p1 = (None, None) if params is None else ((params[0], params[1]), (params[2], params[3]))
        h = F.leaky_relu(self.affine0(x, cond, p0), 0.2, inplace=True)
        return F.leaky_relu(self.affine1(h, cond, p1), 0.2, inplace=True)


class DFGANUpBlock(nn.Module):
    """Generator block: ``[B, in, H, W] -> [B, out, 2H, 2W]``.

    ``x = nearest_upsample_x2(x)``; ``out = shortcut(x) + c2(fuse2(c1(fuse1(x))))`` with a 1x1 ``c_sc``
    shortcut when the width changes; no residual scale.
    """

    def __init__(self, cond_dim: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.learnable_sc = in_channels != out_channels
        self.c1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.c2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.fuse1 = DFBlock(cond_dim, in_channels)
        self.fuse2 = DFBlock(cond_dim, out_channels)
        if self.learnable_sc:
            self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def affine_mlps(self) -> list[AffineMLP]:
        """The MLPs in the order :meth:`forward` takes their outputs as ``params`` (8: fuse1's, then fuse2's)."""
        return [*self.fuse1.affine_mlps(), *self.fuse2.affine_mlps()]

    def forward(self, x: torch.Tensor, cond: torch.Tensor,
                params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``params``: the outputs of :meth:`affine_mlps` for ``cond`` when already computed (fused inference)."""
        p1, p2 = (None, None) if params is None else (params[:4], params[4:])
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # [B, in, 2H, 2W]
        h = self.c1(self.fuse1(x, cond, p1))  # [B, out, 2H, 2W]
        h = self.c2(self.fuse2(h, cond, p2))  # [B, out, 2H, 2W]
        return (self.c_sc(x) if self.learnable_sc else x) + h


class DFGANGenerator(GeneratorBase):
    """DF-GAN generator: ``(noise [B, nz], sent_emb [B, cond_dim]) -> image [B, 3, S, S]`` in [-1, 1].

    ``fc`` maps the noise to [B, 8*ngf, 4, 4]; every block conditions on ``cat(noise, sent_emb)``;
    ``to_rgb`` = LeakyReLU(0.2) -> Conv3x3 -> tanh. Keys equal those of the official
    ``NetG(ngf, nz, cond_dim, imsize, 3)``: ``fc.*``, ``GBlocks.{k}.*``, ``to_rgb.1.*``.
    """

    config_class: ClassVar[type[ConfigBase]] = DFGANGeneratorConfig
    config: DFGANGeneratorConfig

    def __init__(self, config: DFGANGeneratorConfig | None = None) -> None:
        super().__init__(config if config is not None else DFGANGeneratorConfig())
        c = self.config
        plan = dfgan_generator_channels(c.ngf, c.image_size)
        self.fc = nn.Linear(c.nz, 8 * c.ngf * 4 * 4)
        self.GBlocks = nn.ModuleList(DFGANUpBlock(c.nz + c.cond_dim, fin, fout) for fin, fout in plan)
        self.to_rgb = nn.Sequential(
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(plan[-1][1], 3, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, noise: torch.Tensor, sent_emb: torch.Tensor, *, fused: bool = False) -> torch.Tensor:
        """``fused``: evaluate every block's conditioning MLPs together first (:func:`grouped_block_modulations`; the
        same outputs to float rounding, faster with frozen weights, slower in eager mode)."""
        c = self.config
        if noise.dim() != 2 or noise.shape[1] != c.nz:
            raise ValueError(f"noise must be [batch, {c.nz}], got shape {tuple(noise.shape)}")
        if sent_emb.shape != (noise.shape[0], c.cond_dim):
            raise ValueError(f"sent_emb must be [{noise.shape[0]}, {c.cond_dim}], got shape {tuple(sent_emb.shape)}")
        out = self.fc(noise).view(noise.shape[0], 8 * c.ngf, 4, 4)  # [B, 8g, 4, 4]
        out = in_format_of(out, self.to_rgb[1].weight)
        cond = torch.cat((noise, sent_emb), dim=1)  # [B, nz + cond_dim]
        params: list[Sequence[torch.Tensor] | None] = [None] * len(self.GBlocks)
        if fused:
            params = grouped_block_modulations(self.GBlocks, cond)
        for block, p in zip(self.GBlocks, params):
            out = block(out, cond, p)  # doubles the resolution
        return self.to_rgb(out)  # [B, 3, S, S]

    @property
    def noise_dim(self) -> int:
        return self.config.nz

    def synthesize(self, noise: torch.Tensor,
                   cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        return self(noise, cond.sent_emb), None

    def synthesize_fused(self, noise: torch.Tensor,
                         cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        return self(noise, cond.sent_emb, fused=True), None

    def feature_bytes_per_image(self) -> int:
        plan = dfgan_generator_channels(self.config.ngf, self.config.image_size)
        return 4 * max(fin * (8 << k) ** 2 for k, (fin, _) in enumerate(plan))  # block k's upsampled input


# ================================================================================================ discriminator


@dataclass
class DFGANDiscriminatorConfig(TargetAwareDiscriminatorConfig):
    """DF-GAN discriminator settings (``NetD`` + ``NetC``); defaults are the released models."""

    ndf: int = 32


class DFGANNetD(nn.Module):
    """Image trunk: ``image [B, 3, S, S] -> features [B, 8*ndf, 4, 4]``; keys ``conv_img.*``, ``DBlocks.{k}.*``."""

    def __init__(self, ndf: int, image_size: int = 256) -> None:
        super().__init__()
        self.image_size = check_image_size(image_size)
        plan = dfgan_discriminator_channels(ndf, image_size)
        self.conv_img = nn.Conv2d(3, ndf, 3, 1, 1)
        self.DBlocks = nn.ModuleList(ResDownBlock(fin, fout) for fin, fout in plan)
        self.out_channels = plan[-1][1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image must be [batch, 3, {size}, {size}], got shape {tuple(image.shape)}")
        out = self.conv_img(image)  # [B, ndf, S, S]
        for block in self.DBlocks:
            out = block(out)  # halves the resolution
        return out


class DFGANNetC(ConditionalHead):
    """Conditional head: ``(features [B, 8*ndf, 4, 4], sent [B, cond_dim]) -> logits [B]``; keys ``joint_conv.*``."""

    def __init__(self, ndf: int, cond_dim: int = 256) -> None:
        super().__init__(8 * ndf, cond_dim, 2 * ndf)


class DFGANDiscriminator(OneWayDiscriminator, ModelBase):
    """DF-GAN discriminator: ``D`` (official ``netD``) and ``C`` (official ``netC``) in one module.

    ``forward(image)`` returns the features [B, 8*ndf, 4, 4]; ``forward(image, sent_emb)`` the logits [B]
    (``C`` is called inside ``forward``, so a DDP wrapper sees it); ``forward(sent_emb=s, features=f)`` the
    logits of precomputed features. Official state dicts load with ``self.D.load_state_dict(netD)`` and
    ``self.C.load_state_dict(netC)``; this module's own keys are prefixed ``D.`` / ``C.``.
    """

    config_class: ClassVar[type[ConfigBase]] = DFGANDiscriminatorConfig
    config: DFGANDiscriminatorConfig

    def __init__(self, config: DFGANDiscriminatorConfig | None = None) -> None:
        super().__init__(config if config is not None else DFGANDiscriminatorConfig())
        c = self.config
        self.D = DFGANNetD(c.ndf, c.image_size)
        self.C = DFGANNetC(c.ndf, c.cond_dim)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``image [B, 3, S, S] -> features [B, 8*ndf, 4, 4]``."""
        return self.D(image)

    def logits(self, features: torch.Tensor, sent_emb: torch.Tensor) -> torch.Tensor:
        """``(features [B, 8*ndf, 4, 4], sent_emb [B, cond_dim]) -> logits [B]``."""
        return self.C(features, sent_emb)
