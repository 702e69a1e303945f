"""Building blocks shared verbatim by more than one GAN family.

* :class:`AffineMLP` -- the two-layer MLP that predicts a per-channel scale or shift from the condition
  vector. SSA-GAN's SSACN (Liao et al., "Text to Image Generation with Semantic-Spatial Aware GAN", CVPR 2022)
  and DF-GAN's affine layers (Tao et al., "DF-GAN: A Simple and Effective Baseline for Text-to-Image
  Synthesis", CVPR 2022) both use it as ``fc_gamma`` / ``fc_beta``.
* :func:`grouped_affine_mlps` -- many :class:`AffineMLP` of one input evaluated together (one matrix product
  for every first layer, one batched product per shape of last layer), for frozen-weight inference.
* :class:`ResDownBlock` -- the residual discriminator down-block (``resD`` in SSA-GAN / DF-GAN 2020,
  ``D_Block`` in DF-GAN 2022): a 4x4 stride-2 and a 3x3 convolution next to a 1x1 + average-pool shortcut,
  the residual scaled by a learnable scalar that starts at 0.
* :class:`ConditionalHead` -- the sentence-conditioned logit head (SSA-GAN ``COND_DNET``, DF-GAN ``NetC``):
  concatenate the sentence vector tiled over the 4x4 features, 3x3 convolution, LeakyReLU, 4x4 convolution.

Submodule names follow the official implementations, so official state dicts load without renaming.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.config import ConfigBase

__all__ = [
    "TargetAwareDiscriminatorConfig",
    "IMAGE_SIZES",
    "AffineMLP",
    "ConditionalHead",
    "OneWayDiscriminator",
    "check_positive",
    "ResDownBlock",
    "UnusedConv1x1",
    "check_image_size",
    "grouped_affine_mlps",
    "grouped_block_modulations",
    "num_doublings",
]

IMAGE_SIZES: tuple[int, ...] = (64, 128, 256)


class OneWayDiscriminator:
    """The one entry point of a target-aware discriminator (mixed into the families' discriminators).

    ``forward(image)`` returns features; ``forward(image, sent_emb)`` logits, with the conditional head run
    inside ``forward`` so a DDP wrapper sees the whole computation; ``forward(sent_emb=s, features=f)`` the
    logits of precomputed features (mismatched pairs) through the same entry point. Subclasses define
    ``features(image)`` and ``logits(features, sent_emb)``.
    """

    def forward(self, image: torch.Tensor | None = None, sent_emb: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None) -> torch.Tensor:
        return self.one_way(image, sent_emb, features)

    def one_way(self, image: torch.Tensor | None, cond: torch.Tensor | None, features: torch.Tensor | None,
                cond_name: str = "sent_emb", *, extra: str = ""):
        """The dispatch of :meth:`forward` for a condition called ``cond_name`` (StackGAN's is ``mu``)."""
        if (image is None) == (features is None):
            raise ValueError("pass exactly one of image and features")
        if features is None:
            features = self.features(image)  # type: ignore[attr-defined]
            if cond is None:
                return features
        elif cond is None:
            raise ValueError(f"features were given without {cond_name}{extra}; the features are already computed")
        return self.logits(features, cond)  # type: ignore[attr-defined]


def in_format_of(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, H, W] in channels_last when ``weight`` (a conv weight of the same network) is.

    A feature map made by ``view`` is NCHW; an elementwise op whose first input is NCHW returns NCHW, and every
    conv of a channels_last network then converts its input, so the generators start their trunk in the
    format of their own weights.
    """
    if weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def check_positive(**values: int) -> None:
    """Every value must be a positive int (not a bool); the error names the field."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_image_size(size: int, owner: str = "image_size") -> int:
    """Return ``size`` if it is one of :data:`IMAGE_SIZES`, else raise a ``ValueError`` naming ``owner``."""
    if isinstance(size, bool) or not isinstance(size, int) or size not in IMAGE_SIZES:
        raise ValueError(f"{owner} must be one of {', '.join(map(str, IMAGE_SIZES))}, got {size!r}")
    return size


@dataclass
class TargetAwareDiscriminatorConfig(ConfigBase):
    """Sizes of a target-aware discriminator (SSA-GAN's and DF-GAN's subclass this with their defaults)."""

    ndf: int = 64
    cond_dim: int = 256
    image_size: int = 256

    def __post_init__(self) -> None:
        check_positive(ndf=self.ndf, cond_dim=self.cond_dim)
        check_image_size(self.image_size)

    @property
    def num_blocks(self) -> int:
        return num_doublings(self.image_size)


def num_doublings(size: int) -> int:
    """How many times a 4x4 map doubles to reach ``size`` (6 at 256, 5 at 128, 4 at 64)."""
    return check_image_size(size).bit_length() - 3


class AffineMLP(nn.Sequential):
    """``Linear(in_dim, hidden) -> ReLU -> Linear(hidden, out_dim)``: one per-channel modulation vector.

    Children are named ``linear1``, ``relu1``, ``linear2`` as in the official code. The last layer starts with
    zero weight and bias ``last_bias`` (0 for SSA-GAN's gamma and every beta; 1 for DF-GAN's gamma), so at
    initialisation the output is the constant ``last_bias`` whatever the condition.

    ``forward(cond [B, in_dim]) -> [B, out_dim]``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, last_bias: float = 0.0) -> None:
        super().__init__(OrderedDict([
            ("linear1", nn.Linear(in_dim, hidden_dim)),
            ("relu1", nn.ReLU()),
            ("linear2", nn.Linear(hidden_dim, out_dim)),
        ]))
        self.last_bias = last_bias
        self.reset_last_layer()

    def reset_last_layer(self) -> None:
        """Zero the last layer's weight and fill its bias with ``last_bias`` (the official initialisation)."""
        nn.init.zeros_(self.linear2.weight)
        nn.init.constant_(self.linear2.bias, self.last_bias)


def grouped_affine_mlps(mlps: list[AffineMLP], x: torch.Tensor) -> list[torch.Tensor]:
    """``[m(x) for m in mlps]`` computed together: the outputs are those of the modules to float rounding.

    Every first layer reads the same ``x [B, in_dim]``, so their weights are concatenated into one matrix
    product; the last layers are grouped by shape, each group one batched product. A generator has dozens of
    these small MLPs (DF-GAN 64 px: 32; SSA-GAN 256 px: 28), and at batch 1 one call each costs more than the
    arithmetic. The concatenation of the weights is redone at every call, which costs more than it saves in
    eager mode; under ``torch.compile`` with frozen weights (``GeneratorRunner(compile=True)``) it is folded
    into constants once.
    """
    if not mlps:
        return []
    in_dims = {m.linear1.in_features for m in mlps}
    if in_dims != {x.shape[-1]}:
        raise ValueError(f"the MLPs take inputs of size {sorted(in_dims)}, got x of shape {tuple(x.shape)}")
    groups: dict[tuple[int, int], list[int]] = {}  # (hidden, out) -> indices into mlps, in order
    for i, m in enumerate(mlps):
        groups.setdefault((m.linear1.out_features, m.linear2.out_features), []).append(i)
    order = [i for idx in groups.values() for i in idx]
    hidden = F.relu(F.linear(x, torch.cat([mlps[i].linear1.weight for i in order]),
                             torch.cat([mlps[i].linear1.bias for i in order])))  # [B, sum of hidden]
    out: list[torch.Tensor | None] = [None] * len(mlps)
    start = 0
    for (h, _), idx in groups.items():
        k = len(idx)
        hk = hidden[:, start:start + k * h].reshape(x.shape[0], k, h).transpose(0, 1)  # [k, B, h]
        w2 = torch.stack([mlps[i].linear2.weight for i in idx]).transpose(1, 2)  # [k, h, out]
        b2 = torch.stack([mlps[i].linear2.bias for i in idx]).unsqueeze(1)  # [k, 1, out]
        y = torch.baddbmm(b2, hk, w2)  # [k, B, out]
        for j, i in enumerate(idx):
            out[i] = y[j]
        start += k * h
    return out  # type: ignore[return-value]


def grouped_block_modulations(blocks: Sequence[nn.Module], x: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per block, the outputs of its ``affine_mlps()`` for ``x``, all computed in one :func:`grouped_affine_mlps`
    (what a generator's blocks take as ``params`` in fused inference)."""
    per_block = [block.affine_mlps() for block in blocks]
    flat = grouped_affine_mlps([m for mlps in per_block for m in mlps], x)
    out, start = [], 0
    for mlps in per_block:
        out.append(flat[start:start + len(mlps)])
        start += len(mlps)
    return out


class UnusedConv1x1(nn.Module):
    """Placeholder with the tensors of a 1x1 ``Conv2d`` that the official code builds but never applies.

    The official discriminators construct ``conv_s`` in every down-block, also where input and output widths
    agree and the shortcut is the identity. Its ``weight`` [out, in, 1, 1] and ``bias`` [out] are kept here as
    buffers, not parameters: official checkpoints still load key for key, while the optimiser, DDP and
    gradient checks only see parameters that take part in the forward pass.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(out_channels, in_channels, 1, 1))
        self.register_buffer("bias", torch.zeros(out_channels))


class ResDownBlock(nn.Module):
    """Residual down-block of the SSA-GAN / DF-GAN discriminators: ``[B, fin, H, W] -> [B, fout, H/2, W/2]``.

    ``out = avgpool2(shortcut(x)) + gamma * residual(x)`` with

    * ``conv_r`` = Conv4x4 s2 p1 (no bias) -> LeakyReLU(0.2) -> Conv3x3 p1 (no bias) -> LeakyReLU(0.2);
    * ``conv_s`` = Conv1x1 (with bias) when ``fin != fout``, else the identity (an :class:`UnusedConv1x1`
      keeps the official key names);
    * ``gamma`` a learnable scalar, 0 at initialisation (the block starts as its shortcut).
    """

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        self.gamma = nn.Parameter(torch.zeros(1))
        self.conv_r = nn.Sequential(
            nn.Conv2d(fin, fout, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(fout, fout, 3, 1, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.conv_s: nn.Module = nn.Conv2d(fin, fout, 1) if self.learned_shortcut else UnusedConv1x1(fin, fout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.conv_r(x)  # [B, fout, H/2, W/2]
        short = self.conv_s(x) if self.learned_shortcut else x  # [B, fout, H, W]
        return F.avg_pool2d(short, 2) + self.gamma * res


class ConditionalHead(nn.Module):
    """Sentence-conditioned logit head: ``(features [B, C, 4, 4], sent [B, cond_dim]) -> logits [B]``.

    ``joint_conv`` = Conv3x3 p1 (C + cond_dim -> hidden, no bias) -> LeakyReLU(0.2) -> Conv4x4 (hidden -> 1,
    no bias) applied to ``cat(features, sent tiled 4x4)``. The official heads return [B, 1, 1, 1]; this one
    returns the flattened [B].
    """

    def __init__(self, in_channels: int, cond_dim: int, hidden_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.cond_dim = cond_dim
        self.joint_conv = nn.Sequential(
            nn.Conv2d(in_channels + cond_dim, hidden_channels, 3, 1, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden_channels, 1, 4, 1, 0, bias=False),
        )

    def forward(self, features: torch.Tensor, sent_emb: torch.Tensor) -> torch.Tensor:
        if features.dim() != 4 or features.shape[1:] != (self.in_channels, 4, 4):
            raise ValueError(f"features must be [batch, {self.in_channels}, 4, 4], "
                             f"got shape {tuple(features.shape)}")
        if sent_emb.shape != (features.shape[0], self.cond_dim):
            raise ValueError(f"sent_emb must be [{features.shape[0]}, {self.cond_dim}], "
                             f"got shape {tuple(sent_emb.shape)}")
        tiled = sent_emb[:, :, None, None].expand(-1, -1, 4, 4)  # [B, cond_dim, 4, 4]
        out = self.joint_conv(torch.cat((features, tiled), dim=1))  # [B, 1, 1, 1]
        return out.reshape(features.shape[0])
