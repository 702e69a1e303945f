"""AttnGAN generator and discriminators.

Xu, Zhang, Huang, Zhang, Gan, Huang, He: "AttnGAN: Fine-Grained Text to Image Generation with Attentional
Generative Adversarial Networks", CVPR 2018.

The generator is a stack of stages (paper Sec. 3.1, Eq. 1): ``h_0 = F_0(z, F^ca(e))`` makes 64x64 features
from noise and a conditioning-augmented sentence vector (Sec. 3.1; CA from StackGAN), and each later stage
``h_i = F_i(h_{i-1}, F^attn_i(e, h_{i-1}))`` attends from every image region to the words (Eq. 2: a softmax
over the words of ``h_j^T e'_i`` with ``e' = U e``, the context ``c_j = sum_i beta_{j,i} e'_i``), joins the
context to the features, refines them with residual blocks and doubles the resolution. Every stage has its
own image head ``G_i`` (3x3 conv + tanh). The discriminators (one per scale) encode an image to a 4x4 map and
score it with an unconditional and a sentence-conditioned head (Eq. 4).

This module follows the official code (``taoxugit/AttnGAN`` @0d000e6, ``code/model.py`` and
``code/GlobalAttention.py``), so that official state dicts load key for key and reproduce its outputs:

* gated linear units everywhere in G: ``GLU(x) = x[:, :C/2] * sigmoid(x[:, C/2:])``; an up-block is
  nearest x2 -> conv3x3 (no bias) -> BN -> GLU; a residual block has *no* activation after the sum;
* CA is ``Linear(text_dim, 4*embedding_dim) -> GLU -> split(mu, logvar)``, ``c = eps * exp(logvar / 2) + mu``;
  the official code draws ``eps`` on every call (in eval mode too); here a caller may pass ``eps`` or a
  ``torch.Generator``;
* the first stage takes ``cat(c, z)`` (condition first); a refinement stage ignores ``c`` and takes
  ``cat(h, context)``;
* the attention has no value projection and no ``1/sqrt(d)`` scaling: ``conv_context`` (1x1, no bias) maps
  the words to ``gf_dim`` channels and serves as key and value;
* the caption mask (True at padding) is applied with ``attention_mask="own"`` to each item's own scores.
  ``"official"`` reproduces the official indexing (``mask.repeat(queryL, 1)`` against scores viewed as
  ``(B*HW, T)``, issue taoxugit/AttnGAN#93): pixel ``q`` of item ``b`` is masked with the mask of item
  ``(b*HW + q) % B``. The two agree for a batch of one; released checkpoints were trained with the quirk;
* the discriminator heads end in a sigmoid (``D_GET_LOGITS``; the official losses are ``nn.BCELoss``), so the
  "logits" here are probabilities, as in the official code; the conditional head gets ``sent_emb``.

``G_DCGAN`` (``GAN.B_DCGAN``, ``cfg/bird_attnDCGAN2.yml``) is ``dcgan=True``: the same trunk (usually with
``r_num=0``) and a single image head ``img_net`` after the last stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from t2igan.config import ConfigBase
from t2igan.models.base import GeneratorBase, ModelBase, TextCondition
from t2igan.models.layers import OneWayDiscriminator, check_image_size, check_positive

__all__ = [
    "ATTENTION_MASKS",
    "AttnGANDiscriminator",
    "AttnGANDiscriminatorConfig",
    "AttnGANDiscriminators",
    "AttnGANDiscriminatorsConfig",
    "AttnGANGenerator",
    "AttnGANGeneratorConfig",
    "AttnGANOutput",
    "CANet",
    "DGetLogits",
    "GetImageG",
    "GlobalAttentionGeneral",
    "InitStageG",
    "NextStageG",
    "ResBlock",
    "attention_mask_rows",
    "up_block",
]

AttentionMask = Literal["own", "official"]
ATTENTION_MASKS: tuple[str, ...] = ("own", "official")


def _check_attention_mask(value: str) -> None:
    if value not in ATTENTION_MASKS:
        raise ValueError(f"attention_mask must be one of {', '.join(ATTENTION_MASKS)}, got {value!r}")


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


# ================================================================================================ blocks


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution, stride 1, padding 1, no bias (official ``conv3x3``)."""
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """``[B, in, H, W] -> [B, out, 2H, 2W]``: nearest x2 -> conv3x3 (to 2*out) -> BN -> GLU (keys ``.1``, ``.2``)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_channels, 2 * out_channels),
        nn.BatchNorm2d(2 * out_channels),
        nn.GLU(dim=1),
    )


class ResBlock(nn.Module):
    """``x + BN(conv3x3(GLU(BN(conv3x3(x)))))`` at constant width, no activation after the sum.

    Keys ``block.{0,1,3,4}.*`` as the official ``ResBlock(channel_num)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channels, 2 * channels),
            nn.BatchNorm2d(2 * channels),
            nn.GLU(dim=1),
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + x  # [B, C, H, W]


class CANet(nn.Module):
    """Conditioning augmentation (official ``CA_NET``): ``sent_emb [B, text_dim] -> (c, mu, logvar)``, each [B, D].

    ``fc = Linear(text_dim, 4*D)`` then GLU gives ``2*D`` values, split into ``mu`` and ``logvar``;
    ``c = eps * exp(logvar / 2) + mu`` with ``eps`` given, or drawn from ``generator`` (on the generator's
    device, then moved), or from the global RNG (what the official code does, ``FloatTensor(B, D).normal_()``).
    """

    def __init__(self, text_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.embedding_dim = embedding_dim
        self.fc = nn.Linear(text_dim, 4 * embedding_dim, bias=True)
        self.glu = nn.GLU(dim=1)

    def encode(self, sent_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.glu(self.fc(sent_emb))  # [B, 2D]
        return x[:, : self.embedding_dim], x[:, self.embedding_dim:]  # mu, logvar: [B, D] each

    def forward(self, sent_emb: torch.Tensor, eps: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(sent_emb)
        if eps is None:
            device = generator.device if generator is not None else mu.device
            eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype).to(mu.device)
        elif eps.shape != mu.shape:
            raise ValueError(f"eps must be {list(mu.shape)}, got shape {tuple(eps.shape)}")
        std = torch.exp(0.5 * logvar)
        return eps * std + mu, mu, logvar  # [B, D] each


def attention_mask_rows(mask: torch.Tensor, query_len: int, mode: AttentionMask) -> torch.Tensor:
    """The mask each pixel's scores get: ``mask [B, T]`` (True = padding) -> ``[B, query_len, T]`` (or broadcastable).

    ``"own"``: item ``b`` uses ``mask[b]``. ``"official"``: pixel ``q`` of item ``b`` uses
    ``mask[(b * query_len + q) % B]``, what ``mask.repeat(queryL, 1)`` against the ``(B*queryL, T)`` view of
    the scores computes in the official ``GlobalAttentionGeneral``.
    """
    _check_attention_mask(mode)
    if mode == "own":
        return mask[:, None, :]  # [B, 1, T]
    batch = mask.shape[0]
    rows = torch.arange(batch * query_len, device=mask.device).view(batch, query_len) % batch  # [B, HW]
    return mask[rows]  # [B, HW, T]


class GlobalAttentionGeneral(nn.Module):
    """Word attention of a refinement stage (paper Eq. 2; official ``GlobalAttentionGeneral``).

    ``forward(h [B, idf, H, W], words [B, cdf, T], mask [B, T] or None) -> (context [B, idf, H, W],
    attn [B, T, H, W])``: ``e' = conv_context(words)`` ([B, idf, T], 1x1 conv without bias), scores
    ``h^T e'`` ([B, HW, T]) with masked words at ``-inf``, softmax over the words, ``context = e' attn^T``.
    """

    def __init__(self, idf: int, cdf: int, attention_mask: AttentionMask = "own") -> None:
        super().__init__()
        _check_attention_mask(attention_mask)
        self.attention_mask = attention_mask
        self.conv_context = nn.Conv2d(cdf, idf, 1, 1, 0, bias=False)

    def forward(self, h: torch.Tensor, words_emb: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, idf, height, width = h.shape
        query_len = height * width
        source = self.conv_context(words_emb.unsqueeze(3)).squeeze(3)  # [B, idf, T]
        target_t = h.reshape(batch, idf, query_len).transpose(1, 2)  # [B, HW, idf]
        scores = torch.bmm(target_t, source)  # [B, HW, T]
        if mask is not None:
            scores = scores.masked_fill(attention_mask_rows(mask, query_len, self.attention_mask), float("-inf"))
        attn = torch.softmax(scores, dim=2).transpose(1, 2).contiguous()  # [B, T, HW]
        context = torch.bmm(source, attn)  # [B, idf, HW]
        return context.view(batch, idf, height, width), attn.view(batch, -1, height, width)


class InitStageG(nn.Module):
    """First stage ``F_0`` (official ``INIT_STAGE_G(16*ngf, ncf)``): ``(z, c) -> h [B, ngf, 64, 64]``.

    ``fc = Linear(D + z_dim, 16*ngf*4*4*2, no bias) -> BN1d -> GLU`` on ``cat(c, z)``, viewed as
    [B, 16ngf, 4, 4], then four up-blocks 16ngf -> 8ngf -> 4ngf -> 2ngf -> ngf (8, 16, 32, 64 px).
    """

    def __init__(self, ngf: int, z_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.gf_dim = 16 * ngf
        self.fc = nn.Sequential(
            nn.Linear(z_dim + embedding_dim, self.gf_dim * 4 * 4 * 2, bias=False),
            nn.BatchNorm1d(self.gf_dim * 4 * 4 * 2),
            nn.GLU(dim=1),
        )
        self.upsample1 = up_block(self.gf_dim, self.gf_dim // 2)
        self.upsample2 = up_block(self.gf_dim // 2, self.gf_dim // 4)
        self.upsample3 = up_block(self.gf_dim // 4, self.gf_dim // 8)
        self.upsample4 = up_block(self.gf_dim // 8, self.gf_dim // 16)

    def forward(self, z: torch.Tensor, c_code: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.cat((c_code, z), dim=1)).view(-1, self.gf_dim, 4, 4)  # [B, 16ngf, 4, 4]
        out = self.upsample1(out)  # [B, 8ngf, 8, 8]
        out = self.upsample2(out)  # [B, 4ngf, 16, 16]
        out = self.upsample3(out)  # [B, 2ngf, 32, 32]
        return self.upsample4(out)  # [B, ngf, 64, 64]


class NextStageG(nn.Module):
    """Refinement stage ``F_i`` (official ``NEXT_STAGE_G``): ``h [B, ngf, H, W] -> [B, ngf, 2H, 2W]`` and ``attn``.

    ``context, attn = att(h, words, mask)``; ``out = upsample(residual(cat(h, context)))`` with ``r_num``
    :class:`ResBlock` of width ``2*ngf`` and an up-block ``2ngf -> ngf``. ``attn`` is [B, T, H, W] at the
    stage's *input* resolution.
    """

    def __init__(self, ngf: int, words_dim: int, r_num: int, attention_mask: AttentionMask = "own") -> None:
        super().__init__()
        self.att = GlobalAttentionGeneral(ngf, words_dim, attention_mask)
        self.residual = nn.Sequential(*[ResBlock(2 * ngf) for _ in range(r_num)])
        self.upsample = up_block(2 * ngf, ngf)

    def forward(self, h: torch.Tensor, words_emb: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        context, attn = self.att(h, words_emb, mask)  # [B, ngf, H, W], [B, T, H, W]
        out = self.residual(torch.cat((h, context), dim=1))  # [B, 2ngf, H, W]
        return self.upsample(out), attn  # [B, ngf, 2H, 2W]


class GetImageG(nn.Module):
    """Image head ``G_i`` (official ``GET_IMAGE_G``): conv3x3 (no bias) to 3 channels, tanh; keys ``img.0.*``."""

    def __init__(self, ngf: int) -> None:
        super().__init__()
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.img(h)  # [B, 3, H, W]


# ================================================================================================ generator


@dataclass
class AttnGANGeneratorConfig(ConfigBase):
    """AttnGAN generator settings; the defaults are the released CUB model (``cfg/bird_attn2.yml``).

    ``gf_dim`` is the official ``GAN.GF_DIM`` (32 CUB, 48 COCO), ``embedding_dim`` the CA output
    ``GAN.CONDITION_DIM``, ``text_dim`` the sentence width (``TEXT.EMBEDDING_DIM``), ``words_dim`` the word
    width (the same ``TEXT.EMBEDDING_DIM`` in the official code), ``r_num`` the residual blocks per refinement
    stage (2 CUB, 3 COCO, 0 AttnDCGAN), ``branch_num`` the stages (1, 2, 3: 64, 128, 256 px), ``dcgan`` the
    ``G_DCGAN`` variant (one image head after the last stage).
    """

    gf_dim: int = 32
    z_dim: int = 100
    embedding_dim: int = 100
    text_dim: int = 256
    words_dim: int = 256
    r_num: int = 2
    branch_num: int = 3
    dcgan: bool = False
    attention_mask: AttentionMask = "own"

    def __post_init__(self) -> None:
        check_positive(gf_dim=self.gf_dim, z_dim=self.z_dim, embedding_dim=self.embedding_dim,
                       text_dim=self.text_dim, words_dim=self.words_dim)
        _check_non_negative(r_num=self.r_num)
        if isinstance(self.branch_num, bool) or self.branch_num not in (1, 2, 3):
            raise ValueError(f"branch_num must be 1, 2 or 3, got {self.branch_num!r}")
        _check_attention_mask(self.attention_mask)

    @property
    def image_size(self) -> int:
        """Side of the last image: 64, 128 or 256."""
        return 64 * 2 ** (self.branch_num - 1)


@dataclass
class AttnGANOutput:
    """What :class:`AttnGANGenerator` returns.

    ``images``: one [B, 3, S, S] image in [-1, 1] per stage (64, 128, 256 px; only the last for ``dcgan``);
    ``attention_maps``: one [B, T, S, S] map per refinement stage, at its input resolution (64, 128 px);
    ``mu``, ``logvar``, ``c_code``: the CA mean, log-variance and sample, [B, embedding_dim] each.
    """

    images: list[torch.Tensor]
    attention_maps: list[torch.Tensor]
    mu: torch.Tensor
    logvar: torch.Tensor
    c_code: torch.Tensor = field(repr=False)


class AttnGANGenerator(GeneratorBase):
    """AttnGAN generator: ``(z, sent_emb, words_emb, mask) -> AttnGANOutput`` (paper Sec. 3.1, Eqs. 1-2).

    Inputs: ``z [B, z_dim]``, ``sent_emb [B, text_dim]``, ``words_emb [B, words_dim, T]``, ``mask [B, T]``
    bool, True at padded words (``captions == 0``), or ``None``; optional CA noise ``eps [B, embedding_dim]``
    or a ``generator`` to draw it from. State-dict keys equal those of the official ``G_NET()`` (``ca_net``,
    ``h_net{1,2,3}``, ``img_net{1,2,3}``) or, with ``dcgan=True``, ``G_DCGAN()`` (a single ``img_net``).
    """

    config_class: ClassVar[type[ConfigBase]] = AttnGANGeneratorConfig
    config: AttnGANGeneratorConfig

    def __init__(self, config: AttnGANGeneratorConfig | None = None) -> None:
        super().__init__(config if config is not None else AttnGANGeneratorConfig())
        c = self.config
        self.ca_net = CANet(c.text_dim, c.embedding_dim)
        self.stage_names: tuple[str, ...] = tuple(f"h_net{i}" for i in range(1, c.branch_num + 1))
        for i, name in enumerate(self.stage_names, 1):
            if i == 1:
                self.add_module(name, InitStageG(c.gf_dim, c.z_dim, c.embedding_dim))
            else:
                self.add_module(name, NextStageG(c.gf_dim, c.words_dim, c.r_num, c.attention_mask))
            if not c.dcgan:
                self.add_module(f"img_net{i}", GetImageG(c.gf_dim))
        if c.dcgan:
            self.img_net = GetImageG(c.gf_dim)

    @property
    def attention_mask(self) -> AttentionMask:
        return self.config.attention_mask

    def set_attention_mask(self, mode: AttentionMask) -> None:
        """Switch the masking of every attention layer (and the config) to ``"own"`` or ``"official"``."""
        _check_attention_mask(mode)
        self.config.attention_mask = mode
        for module in self.modules():
            if isinstance(module, GlobalAttentionGeneral):
                module.attention_mask = mode

    def _check_inputs(self, z: torch.Tensor, sent_emb: torch.Tensor, words_emb: torch.Tensor,
                      mask: torch.Tensor | None) -> None:
        c = self.config
        if z.dim() != 2 or z.shape[1] != c.z_dim:
            raise ValueError(f"z must be [batch, {c.z_dim}], got shape {tuple(z.shape)}")
        batch = z.shape[0]
        if sent_emb.shape != (batch, c.text_dim):
            raise ValueError(f"sent_emb must be [{batch}, {c.text_dim}], got shape {tuple(sent_emb.shape)}")
        if words_emb.dim() != 3 or words_emb.shape[:2] != (batch, c.words_dim):
            raise ValueError(f"words_emb must be [{batch}, {c.words_dim}, T], got shape {tuple(words_emb.shape)}")
        if mask is not None:
            if mask.shape != (batch, words_emb.shape[2]):
                raise ValueError(f"mask must be [{batch}, {words_emb.shape[2]}] (True at padding), "
                                 f"got shape {tuple(mask.shape)}")
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be a bool tensor (True at padding), got {mask.dtype}")

    def forward(self, z: torch.Tensor, sent_emb: torch.Tensor, words_emb: torch.Tensor,
                mask: torch.Tensor | None = None, eps: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None) -> AttnGANOutput:
        self._check_inputs(z, sent_emb, words_emb, mask)
        c_code, mu, logvar = self.ca_net(sent_emb, eps, generator)  # [B, D] each
        images: list[torch.Tensor] = []
        att_maps: list[torch.Tensor] = []
        h = self.h_net1(z, c_code)  # [B, ngf, 64, 64]
        for i, name in enumerate(self.stage_names, 1):
            if i > 1:
                h, attn = getattr(self, name)(h, words_emb, mask)  # [B, ngf, 2H, 2W], [B, T, H, W]
                att_maps.append(attn)
            if not self.config.dcgan:
                images.append(getattr(self, f"img_net{i}")(h))  # [B, 3, H, W]
        if self.config.dcgan:
            images.append(self.img_net(h))
        return AttnGANOutput(images, att_maps, mu, logvar, c_code)

    @property
    def noise_dim(self) -> int:
        """z, then the CA noise: an image is a function of its noise vector and its caption."""
        return self.config.z_dim + self.config.embedding_dim

    def synthesize(self, noise: torch.Tensor,
                   cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The last stage's image and the word attention of every refinement stage ([B, T, h, w])."""
        if cond.words_emb is None:
            raise ValueError("AttnGAN needs the word embeddings (TextCondition.words_emb)")
        z = self.config.z_dim
        out = self(noise[:, :z], cond.sent_emb, cond.words_emb, cond.word_mask, noise[:, z:])
        return out.images[-1], (out.attention_maps or None)


# ================================================================================================ discriminators


def _down_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)


def encode_image_by_16times(ndf: int) -> nn.Sequential:
    """``[B, 3, S, S] -> [B, 8ndf, S/16, S/16]``: four 4x4 stride-2 convs, BN after all but the first, LReLU(0.2)."""
    return nn.Sequential(
        _down_conv(3, ndf), nn.LeakyReLU(0.2, inplace=True),
        _down_conv(ndf, 2 * ndf), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2, inplace=True),
        _down_conv(2 * ndf, 4 * ndf), nn.BatchNorm2d(4 * ndf), nn.LeakyReLU(0.2, inplace=True),
        _down_conv(4 * ndf, 8 * ndf), nn.BatchNorm2d(8 * ndf), nn.LeakyReLU(0.2, inplace=True),
    )


def down_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """4x4 stride-2 conv (no bias) -> BN -> LReLU(0.2): halves the resolution."""
    return nn.Sequential(_down_conv(in_channels, out_channels), nn.BatchNorm2d(out_channels),
                         nn.LeakyReLU(0.2, inplace=True))


def block3x3_leaky_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 (no bias) -> BN -> LReLU(0.2) (official ``Block3x3_leakRelu``)."""
    return nn.Sequential(conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels),
                         nn.LeakyReLU(0.2, inplace=True))


class DGetLogits(nn.Module):
    """Discriminator head (official ``D_GET_LOGITS``): ``features [B, 8ndf, 4, 4] -> probability [B]``.

    Conditional (``bcondition=True``): ``jointConv`` (conv3x3 -> BN -> LReLU) on ``cat(features, sent tiled
    4x4)`` first. Both kinds end in ``outlogits = Conv2d(8ndf, 1, 4, stride 4, bias) -> Sigmoid``.
    """

    def __init__(self, ndf: int, text_dim: int, bcondition: bool) -> None:
        super().__init__()
        self.df_dim = ndf
        self.ef_dim = text_dim
        self.bcondition = bcondition
        if bcondition:
            self.jointConv = block3x3_leaky_relu(8 * ndf + text_dim, 8 * ndf)
        self.outlogits = nn.Sequential(nn.Conv2d(8 * ndf, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, features: torch.Tensor, sent_emb: torch.Tensor | None = None) -> torch.Tensor:
        if features.dim() != 4 or features.shape[1:] != (8 * self.df_dim, 4, 4):
            raise ValueError(f"features must be [batch, {8 * self.df_dim}, 4, 4], got shape {tuple(features.shape)}")
        if self.bcondition:
            if sent_emb is None or sent_emb.shape != (features.shape[0], self.ef_dim):
                got = None if sent_emb is None else tuple(sent_emb.shape)
                raise ValueError(f"the conditional head needs sent_emb [{features.shape[0]}, {self.ef_dim}], "
                                 f"got {got}")
            tiled = sent_emb[:, :, None, None].expand(-1, -1, 4, 4)  # [B, text_dim, 4, 4]
            features = self.jointConv(torch.cat((features, tiled), dim=1))  # [B, 8ndf, 4, 4]
        return self.outlogits(features).view(-1)  # [B]


@dataclass
class AttnGANDiscriminatorConfig(ConfigBase):
    """Settings of one AttnGAN discriminator (``D_NET64``, ``D_NET128`` or ``D_NET256`` by ``image_size``).

    ``df_dim`` is ``GAN.DF_DIM`` (64 CUB, 96 COCO), ``text_dim`` the sentence width of the conditional head,
    ``b_jcu`` whether the unconditional head ``UNCOND_DNET`` exists (False only for the AttnDCGAN setting).
    """

    image_size: int = 256
    df_dim: int = 64
    text_dim: int = 256
    b_jcu: bool = True

    def __post_init__(self) -> None:
        check_positive(df_dim=self.df_dim, text_dim=self.text_dim)
        check_image_size(self.image_size)


class AttnGANDiscriminator(OneWayDiscriminator, ModelBase):
    """AttnGAN discriminator for one scale (paper Eq. 4): image -> features [B, 8ndf, 4, 4] -> probabilities.

    ``forward(image)`` returns the features; ``forward(image, sent_emb)`` the conditional probabilities [B]
    (``COND_DNET`` run inside ``forward``, so a DDP wrapper sees it); ``forward(image, uncond=True)`` the
    unconditional ones (``UNCOND_DNET``); ``forward(features=f, ...)`` the same from precomputed features.
    :meth:`features`, :meth:`cond_logits` and :meth:`uncond_logits` are the parts. All "logits" are sigmoid
    outputs, as in the official code. Keys equal those of the official ``D_NET64/128/256(b_jcu)``.
    """

    config_class: ClassVar[type[ConfigBase]] = AttnGANDiscriminatorConfig
    config: AttnGANDiscriminatorConfig

    def __init__(self, config: AttnGANDiscriminatorConfig | None = None) -> None:
        super().__init__(config if config is not None else AttnGANDiscriminatorConfig())
        c = self.config
        ndf = c.df_dim
        self.img_code_s16 = encode_image_by_16times(ndf)  # [B, 8ndf, S/16, S/16]
        if c.image_size >= 128:
            self.img_code_s32 = down_block(8 * ndf, 16 * ndf)
        if c.image_size == 128:
            self.img_code_s32_1 = block3x3_leaky_relu(16 * ndf, 8 * ndf)
        if c.image_size == 256:
            self.img_code_s64 = down_block(16 * ndf, 32 * ndf)
            self.img_code_s64_1 = block3x3_leaky_relu(32 * ndf, 16 * ndf)
            self.img_code_s64_2 = block3x3_leaky_relu(16 * ndf, 8 * ndf)
        self.UNCOND_DNET: DGetLogits | None = DGetLogits(ndf, c.text_dim, bcondition=False) if c.b_jcu else None
        self.COND_DNET = DGetLogits(ndf, c.text_dim, bcondition=True)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``image [B, 3, S, S] -> features [B, 8*df_dim, 4, 4]``."""
        size = self.config.image_size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image must be [batch, 3, {size}, {size}], got shape {tuple(image.shape)}")
        x = self.img_code_s16(image)  # [B, 8ndf, S/16, S/16]
        if size == 128:
            x = self.img_code_s32_1(self.img_code_s32(x))  # [B, 16ndf, 4, 4] -> [B, 8ndf, 4, 4]
        elif size == 256:
            x = self.img_code_s64(self.img_code_s32(x))  # [B, 16ndf, 8, 8] -> [B, 32ndf, 4, 4]
            x = self.img_code_s64_2(self.img_code_s64_1(x))  # [B, 16ndf, 4, 4] -> [B, 8ndf, 4, 4]
        return x

    def cond_logits(self, features: torch.Tensor, sent_emb: torch.Tensor) -> torch.Tensor:
        """``(features [B, 8ndf, 4, 4], sent_emb [B, text_dim]) -> P(real and matching) [B]`` (sigmoid output)."""
        return self.COND_DNET(features, sent_emb)

    def uncond_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, 8ndf, 4, 4] -> P(real) [B]`` (sigmoid output); needs ``b_jcu=True``."""
        if self.UNCOND_DNET is None:
            raise RuntimeError("this discriminator has no unconditional head (b_jcu=False)")
        return self.UNCOND_DNET(features)

    logits = cond_logits  # the conditional head, under the name the other families use

    def forward(self, image: torch.Tensor | None = None, sent_emb: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None, uncond: bool = False) -> torch.Tensor:
        if not uncond:
            return self.one_way(image, sent_emb, features, extra=" or uncond=True")
        if (image is None) == (features is None):
            raise ValueError("pass exactly one of image and features")
        if sent_emb is not None:
            raise ValueError("uncond=True takes no sent_emb")
        return self.uncond_logits(self.features(image) if features is None else features)


@dataclass
class AttnGANDiscriminatorsConfig(AttnGANDiscriminatorConfig):
    """Settings of the discriminators of all generator stages (one :class:`AttnGANDiscriminator` per scale).

    The fields of one discriminator's config, but ``image_size`` is the generator's last image (64, 128 or 256:
    1, 2 or 3 stages); ``df_dim``, ``text_dim`` and ``b_jcu`` are shared by every stage, as the official
    ``D_NET64/128/256`` read them from one config.
    """

    @property
    def image_sizes(self) -> tuple[int, ...]:
        """The scale of each stage: ``(64,)``, ``(64, 128)`` or ``(64, 128, 256)``."""
        return tuple(64 * 2 ** k for k in range((self.image_size // 64).bit_length()))


class AttnGANDiscriminators(ModelBase):
    """The per-scale discriminators of an AttnGAN generator: ``stages[i]`` scores the 64·2^i px image.

    The official ``netD0.pth``, ``netD1.pth``, ``netD2.pth`` (``D_NET64``, ``D_NET128``, ``D_NET256``) load into
    ``stages[0]``, ``stages[1]``, ``stages[2]`` (keys ``stages.{i}.*``). ``forward(images, sent_emb)`` takes one
    image per stage (``images[i]`` [B, 3, 64·2^i, 64·2^i], as :class:`AttnGANOutput` lists them) and returns, per
    stage, ``(cond [B], uncond [B] or None)``: the sigmoid outputs of ``COND_DNET`` (on ``sent_emb``) and
    ``UNCOND_DNET`` (None when ``b_jcu=False``).
    """

    config_class: ClassVar[type[ConfigBase]] = AttnGANDiscriminatorsConfig
    config: AttnGANDiscriminatorsConfig

    def __init__(self, config: AttnGANDiscriminatorsConfig | None = None) -> None:
        super().__init__(config if config is not None else AttnGANDiscriminatorsConfig())
        c = self.config
        self.stages = nn.ModuleList(
            AttnGANDiscriminator(AttnGANDiscriminatorConfig(image_size=size, df_dim=c.df_dim, text_dim=c.text_dim,
                                                            b_jcu=c.b_jcu))
            for size in c.image_sizes)

    def forward(self, images: list[torch.Tensor] | tuple[torch.Tensor, ...],
                sent_emb: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        if len(images) != len(self.stages):
            raise ValueError(f"expected {len(self.stages)} images (one per stage: "
                             f"{', '.join(map(str, self.config.image_sizes))} px), got {len(images)}")
        out: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for stage, image in zip(self.stages, images):
            features = stage.features(image)  # [B, 8ndf, 4, 4]
            uncond = stage.uncond_logits(features) if stage.UNCOND_DNET is not None else None
            out.append((stage.cond_logits(features, sent_emb), uncond))
        return out
