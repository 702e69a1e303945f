"""StackGAN generators and discriminators (Stage-I 64 px, Stage-II 256 px).

Zhang, Xu, Li, Zhang, Wang, Huang, Metaxas: "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", ICCV 2017.

* Conditioning augmentation (paper Sec. 3.1, Eq. (2)-(3)): the text embedding ``phi_t`` is mapped to a mean
  ``mu`` and a log-variance ``logvar`` and the condition is sampled, ``c = mu + exp(logvar / 2) * eps`` with
  ``eps ~ N(0, I)``. The KL term of Eq. (3) belongs to the objective, not to the network.
* Stage-I (Sec. 3.2, Eq. (4)): ``G0(z, c0)`` maps ``cat(z, c0)`` to a 64 px image; ``D0`` scores an image against
  ``mu0`` tiled over its 4x4 features.
* Stage-II (Sec. 3.3, Eq. (5)-(6)): ``G(s0, c)`` encodes the (detached) Stage-I image to 16x16, joins it with a
  fresh CA sample tiled 16x16, refines it with residual blocks and upsamples to 256 px; ``D`` has a conditional
  and an unconditional head.

This implementation follows the PyTorch code of the authors (``hanzhanggit/StackGAN-Pytorch`` @e72ef88,
``code/model.py``), not the TensorFlow release, so that its state dicts load key for key (``STAGE1_G``,
``STAGE2_G``, ``STAGE1_D``, ``STAGE2_D``, ``CA_NET``, ``D_GET_LOGITS``). Where the code differs from the paper
the code is followed:

* ``CA_NET`` is ``fc -> ReLU -> split``, so ``mu >= 0`` and ``logvar >= 0`` (std >= 1);
* CA samples on every forward, in eval mode too; here ``eps`` can be passed explicitly, or is drawn from an
  optional ``torch.Generator`` (or one generator per sample), else from the global RNG exactly as the official
  ``torch.FloatTensor(B, cond_dim).normal_()`` does. Stage-II draws the Stage-I CA noise first, then its own;
* Stage-I concatenates ``cat(noise, c_code)`` (noise first); Stage-II ``cat(encoded_image, c_code tiled)``;
* upsampling is nearest x2 + 3x3 convolution without bias + BN + ReLU; residual blocks end with a ReLU after
  the sum;
* the discriminators' conditions are the generator's CA mean ``mu`` (not the text embedding), and both heads
  end in a sigmoid: they return probabilities (for ``BCELoss``), although the official modules are named
  ``*_logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from t2igan.config import ConfigBase
from t2igan.models.base import GeneratorBase, ModelBase, ModelLoadError, TextCondition, load_state_strict
from t2igan.models.layers import OneWayDiscriminator, check_positive

__all__ = [
    "StackGANCANet",
    "StackGANDiscriminatorConfig",
    "StackGANLogits",
    "StackGANResBlock",
    "StackGANStage1Config",
    "StackGANStage1Discriminator",
    "StackGANStage1Generator",
    "StackGANStage2Config",
    "StackGANStage2Discriminator",
    "StackGANStage2Generator",
    "draw_eps",
    "stackgan_weights_init",
]

EpsSource = torch.Generator | Sequence[torch.Generator] | None


# ================================================================================================ blocks


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """The official ``conv3x3``: 3x3, stride 1, padding 1, no bias."""
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Official ``upBlock``: nearest x2, conv3x3 (no bias), BN, ReLU (keys ``.1``, ``.2``). [B, i, H, W] -> [B, o, 2H, 2W]"""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_channels, out_channels),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _down(in_channels: int, out_channels: int, batch_norm: bool = True) -> list[nn.Module]:
    """Conv 4x4 stride 2 (no bias) [+ BN] + LeakyReLU(0.2): halves the resolution."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def _same(in_channels: int, out_channels: int) -> list[nn.Module]:
    """conv3x3 (no bias) + BN + LeakyReLU(0.2), resolution kept (the official ``Block3x3_leakRelu`` layers)."""
    return [conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True)]


def draw_eps(batch: int, dim: int, like: torch.Tensor, generator: EpsSource = None) -> torch.Tensor:
    """Standard normal noise [batch, dim] with ``like``'s device and dtype.

    ``generator`` None: the global RNG, as the official ``torch.FloatTensor(B, dim).normal_()`` (identical values
    on the CPU for the same seed). One ``torch.Generator``: drawn from it on its device. A sequence of
    ``batch`` generators: row ``i`` from generator ``i``, so a sample does not depend on the batch it is in.
    """
    if generator is None:
        return torch.randn(batch, dim, device=like.device, dtype=like.dtype)
    if isinstance(generator, torch.Generator):
        return torch.randn(batch, dim, generator=generator, device=generator.device).to(like)
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} generators for a batch of {batch}")
    rows = [torch.randn(1, dim, generator=g, device=g.device).to(like) for g in generators]
    return torch.cat(rows) if rows else like.new_empty(0, dim)


class StackGANCANet(nn.Module):
    """Conditioning augmentation, the official ``CA_NET`` (paper Sec. 3.1, Eq. (2)).

    ``fc: Linear(text_dim, 2 * cond_dim)`` then ReLU; ``mu`` = first half, ``logvar`` = second half (both >= 0);
    ``c_code = eps * exp(0.5 * logvar) + mu``. ``forward(text_embedding [B, text_dim], eps=None, generator=None)
    -> (c_code, mu, logvar)``, each [B, cond_dim].
    """

    def __init__(self, text_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.t_dim = text_dim
        self.c_dim = cond_dim
        self.fc = nn.Linear(text_dim, 2 * cond_dim, bias=True)
        self.relu = nn.ReLU()

    def encode(self, text_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.fc(text_embedding))  # [B, 2 * cond_dim]
        return x[:, : self.c_dim], x[:, self.c_dim:]  # mu, logvar: [B, cond_dim] each

    def forward(self, text_embedding: torch.Tensor, eps: torch.Tensor | None = None,
                generator: EpsSource = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if text_embedding.dim() != 2 or text_embedding.shape[1] != self.t_dim:
            raise ValueError(f"text_embedding must be [batch, {self.t_dim}], got shape {tuple(text_embedding.shape)}")
        mu, logvar = self.encode(text_embedding)
        batch = text_embedding.shape[0]
        if eps is None:
            eps = draw_eps(batch, self.c_dim, mu, generator)
        elif eps.shape != (batch, self.c_dim):
            raise ValueError(f"eps must be [{batch}, {self.c_dim}], got shape {tuple(eps.shape)}")
        std = torch.exp(0.5 * logvar)
        c_code = eps * std + mu  # [B, cond_dim], the official order of operations
        return c_code, mu, logvar


class StackGANResBlock(nn.Module):
    """Official ``ResBlock``: ``ReLU(block(x) + x)``, ``block`` = conv3x3, BN, ReLU, conv3x3, BN. [B, C, H, W]"""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.block(x) + x)


class StackGANLogits(nn.Module):
    """Official ``D_GET_LOGITS``: a head on the [B, 8*ndf, 4, 4] features giving probabilities [B].

    Conditional: ``outlogits`` = conv3x3(8ndf + cond_dim, 8ndf), BN, LeakyReLU, Conv2d(8ndf, 1, 4, 4), Sigmoid on
    ``cat(features, mu tiled 4x4)``. Unconditional: Conv2d(8ndf, 1, 4, 4), Sigmoid.
    """

    def __init__(self, ndf: int, cond_dim: int, conditional: bool) -> None:
        super().__init__()
        self.df_dim = ndf
        self.ef_dim = cond_dim
        self.bcondition = conditional
        if conditional:
            self.outlogits = nn.Sequential(
                conv3x3(8 * ndf + cond_dim, 8 * ndf),
                nn.BatchNorm2d(8 * ndf),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(8 * ndf, 1, kernel_size=4, stride=4),
                nn.Sigmoid(),
            )
        else:
            self.outlogits = nn.Sequential(nn.Conv2d(8 * ndf, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, features: torch.Tensor, mu: torch.Tensor | None = None) -> torch.Tensor:
        if self.bcondition:
            if mu is None:
                raise ValueError("the conditional head needs the condition mu")
            c = mu.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)  # [B, cond_dim, 4, 4]
            features = torch.cat((features, c), 1)  # [B, 8ndf + cond_dim, 4, 4]
        return self.outlogits(features).view(-1)  # [B]


def stackgan_weights_init(module: nn.Module) -> None:
    """The official ``weights_init`` (``miscc/utils.py``): conv and linear N(0, 0.02), linear bias 0,
    BN weight N(1, 0.02), BN bias 0. Apply with ``model.apply(stackgan_weights_init)``."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# ================================================================================================ generators


@dataclass
class StackGANStage1Config(ConfigBase):
    """Stage-I generator settings; defaults are the released COCO model (``cfg/coco_s1.yml``: GF_DIM 192).

    ``text_dim`` is ``TEXT.DIMENSION`` (1024 for char-CNN-RNN embeddings; e.g. 256 for DAMSM sentence
    embeddings). The trunk has ``8 * ngf`` channels at 4x4 and ``ngf // 2`` at 64x64.
    """

    ngf: int = 192
    nz: int = 100
    text_dim: int = 1024
    cond_dim: int = 128

    def __post_init__(self) -> None:
        check_positive(ngf=self.ngf, nz=self.nz, text_dim=self.text_dim, cond_dim=self.cond_dim)
        if self.ngf < 2:
            raise ValueError(f"ngf must be at least 2 (the last block has ngf // 2 channels), got {self.ngf}")

    @property
    def image_size(self) -> int:
        return 64


class StackGANStage1Generator(GeneratorBase):
    """Stage-I generator, the official ``STAGE1_G``: ``(noise [B, nz], text_embedding [B, text_dim]) ->
    (image [B, 3, 64, 64], mu [B, cond_dim], logvar [B, cond_dim])``.

    ``fc``: Linear(nz + cond_dim, 8ngf*4*4, no bias), BN1d, ReLU on ``cat(noise, c_code)``; four ``upBlock`` s
    8ngf -> 4ngf -> 2ngf -> ngf -> ngf/2 (8, 16, 32, 64 px); ``img``: conv3x3 + tanh. Keys: ``ca_net.fc.*``,
    ``fc.{0,1}.*``, ``upsample{1..4}.{1,2}.*``, ``img.0.weight``.
    """

    config_class: ClassVar[type[ConfigBase]] = StackGANStage1Config
    config: StackGANStage1Config

    def __init__(self, config: StackGANStage1Config | None = None) -> None:
        super().__init__(config if config is not None else StackGANStage1Config())
        c = self.config
        self.gf_dim = 8 * c.ngf
        self.ca_net = StackGANCANet(c.text_dim, c.cond_dim)
        ngf = self.gf_dim
        self.fc = nn.Sequential(
            nn.Linear(c.nz + c.cond_dim, ngf * 4 * 4, bias=False),
            nn.BatchNorm1d(ngf * 4 * 4),
            nn.ReLU(inplace=True),
        )
        self.upsample1 = up_block(ngf, ngf // 2)  # 8x8
        self.upsample2 = up_block(ngf // 2, ngf // 4)  # 16x16
        self.upsample3 = up_block(ngf // 4, ngf // 8)  # 32x32
        self.upsample4 = up_block(ngf // 8, ngf // 16)  # 64x64
        self.img = nn.Sequential(conv3x3(ngf // 16, 3), nn.Tanh())
        self.apply(stackgan_weights_init)

    def forward(self, noise: torch.Tensor, text_embedding: torch.Tensor, eps: torch.Tensor | None = None,
                generator: EpsSource = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        if noise.dim() != 2 or noise.shape[1] != c.nz:
            raise ValueError(f"noise must be [batch, {c.nz}], got shape {tuple(noise.shape)}")
        if text_embedding.shape != (noise.shape[0], c.text_dim):
            raise ValueError(f"text_embedding must be [{noise.shape[0]}, {c.text_dim}], "
                             f"got shape {tuple(text_embedding.shape)}")
        c_code, mu, logvar = self.ca_net(text_embedding, eps, generator)  # [B, cond_dim] each
        h = self.fc(torch.cat((noise, c_code), 1))  # [B, 8ngf*16]
        h = h.view(-1, self.gf_dim, 4, 4)  # [B, 8ngf, 4, 4]
        h = self.upsample1(h)  # [B, 4ngf, 8, 8]
        h = self.upsample2(h)  # [B, 2ngf, 16, 16]
        h = self.upsample3(h)  # [B, ngf, 32, 32]
        h = self.upsample4(h)  # [B, ngf/2, 64, 64]
        return self.img(h), mu, logvar  # [B, 3, 64, 64] in [-1, 1]

    @property
    def noise_dim(self) -> int:
        """z, then the CA noise: an image is a function of its noise vector and its text embedding."""
        return self.config.nz + self.config.cond_dim

    def synthesize(self, noise: torch.Tensor,
                   cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        nz = self.config.nz
        return self(noise[:, :nz], cond.sent_emb, noise[:, nz:])[0], None


@dataclass
class StackGANStage2Config(ConfigBase):
    """Stage-II generator settings; defaults are the released COCO model (``cfg/coco_s2.yml``: GF_DIM 192,
    R_NUM 2). The embedded Stage-I generator uses ``stage1_ngf`` (None: the same ``ngf``, as the official code,
    which reads one ``GF_DIM`` for both) and the same ``nz``, ``text_dim`` and ``cond_dim``."""

    ngf: int = 192
    nz: int = 100
    text_dim: int = 1024
    cond_dim: int = 128
    r_num: int = 2
    stage1_ngf: int | None = None
    # the frozen Stage-I generator stays in eval mode while Stage II trains; True keeps the official behaviour
    # (its BN layers in train mode: batch statistics, and running statistics that drift)
    stage1_bn_drift: bool = False

    def __post_init__(self) -> None:
        check_positive(ngf=self.ngf, nz=self.nz, text_dim=self.text_dim, cond_dim=self.cond_dim)
        if isinstance(self.r_num, bool) or not isinstance(self.r_num, int) or self.r_num < 0:
            raise ValueError(f"r_num must be a non-negative integer, got {self.r_num!r}")
        if self.ngf < 4:
            raise ValueError(f"ngf must be at least 4 (the last block has ngf // 4 channels), got {self.ngf}")
        self.stage1_config()  # validates stage1_ngf

    @property
    def image_size(self) -> int:
        return 256

    def stage1_config(self) -> StackGANStage1Config:
        return StackGANStage1Config(ngf=self.ngf if self.stage1_ngf is None else self.stage1_ngf, nz=self.nz,
                                    text_dim=self.text_dim, cond_dim=self.cond_dim)


class StackGANStage2Generator(GeneratorBase):
    """Stage-II generator, the official ``STAGE2_G(STAGE1_G)``: ``(noise, text_embedding) ->
    (stage1_image [B, 3, 64, 64], image [B, 3, 256, 256], mu [B, cond_dim], logvar [B, cond_dim])``.

    The Stage-I generator is the submodule ``STAGE1_G`` (keys ``STAGE1_G.*``); it runs first, without gradient
    (the official code detaches its image), then: ``encoder`` (conv3x3 + ReLU, two 4x4 stride-2 convs + BN +
    ReLU: [B, 4ngf, 16, 16]); Stage-II's own ``ca_net``; ``hr_joint`` (conv3x3 + BN + ReLU on ``cat(encoded,
    c_code tiled 16x16)``); ``r_num`` residual blocks; four ``upBlock`` s 4ngf -> 2ngf -> ngf -> ngf/2 -> ngf/4
    (32 .. 256 px); ``img``: conv3x3 + tanh. ``mu`` and ``logvar`` are Stage-II's CA statistics.

    Freezing Stage-I (``requires_grad_(False)``, and the official code keeping it in train mode) is left to the
    training objective. Load pretrained Stage-I weights with ``model.STAGE1_G.load_state_dict(...)``.
    """

    config_class: ClassVar[type[ConfigBase]] = StackGANStage2Config
    needs_init_from: ClassVar[str | None] = "a trained stage-I generator (--init-from STAGE1_RUN)"
    config: StackGANStage2Config

    def __init__(self, config: StackGANStage2Config | None = None) -> None:
        super().__init__(config if config is not None else StackGANStage2Config())
        c = self.config
        ngf = c.ngf
        self.gf_dim = ngf
        self.ef_dim = c.cond_dim
        self.STAGE1_G = StackGANStage1Generator(c.stage1_config())
        self.ca_net = StackGANCANet(c.text_dim, c.cond_dim)
        self.encoder = nn.Sequential(
            conv3x3(3, ngf),
            nn.ReLU(inplace=True),
            nn.Conv2d(ngf, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(ngf * 2, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(inplace=True),
        )
        self.hr_joint = nn.Sequential(
            conv3x3(c.cond_dim + ngf * 4, ngf * 4),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(inplace=True),
        )
        self.residual = nn.Sequential(*[StackGANResBlock(ngf * 4) for _ in range(c.r_num)])
        self.upsample1 = up_block(ngf * 4, ngf * 2)  # 32x32
        self.upsample2 = up_block(ngf * 2, ngf)  # 64x64
        self.upsample3 = up_block(ngf, ngf // 2)  # 128x128
        self.upsample4 = up_block(ngf // 2, ngf // 4)  # 256x256
        self.img = nn.Sequential(conv3x3(ngf // 4, 3), nn.Tanh())
        self.apply(stackgan_weights_init)

    def forward(self, noise: torch.Tensor, text_embedding: torch.Tensor, eps1: torch.Tensor | None = None,
                eps2: torch.Tensor | None = None, generator: EpsSource = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``eps1`` is Stage-I's CA noise, ``eps2`` Stage-II's; a missing one is drawn (``eps1`` first, as the
        official code) from ``generator`` (see :func:`draw_eps`)."""
        with torch.no_grad():  # the official code detaches the Stage-I image
            stage1_img, _, _ = self.STAGE1_G(noise, text_embedding, eps1, generator)  # [B, 3, 64, 64]
        stage1_img = stage1_img.detach()
        encoded = self.encoder(stage1_img)  # [B, 4ngf, 16, 16]
        c_code, mu, logvar = self.ca_net(text_embedding, eps2, generator)  # [B, cond_dim] each
        c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 16, 16)  # [B, cond_dim, 16, 16]
        h = self.hr_joint(torch.cat([encoded, c_code], 1))  # [B, 4ngf, 16, 16]
        h = self.residual(h)  # [B, 4ngf, 16, 16]
        h = self.upsample1(h)  # [B, 2ngf, 32, 32]
        h = self.upsample2(h)  # [B, ngf, 64, 64]
        h = self.upsample3(h)  # [B, ngf/2, 128, 128]
        h = self.upsample4(h)  # [B, ngf/4, 256, 256]
        return stage1_img, self.img(h), mu, logvar  # image [B, 3, 256, 256] in [-1, 1]

    def init_from(self, other: ModelBase) -> str:
        """A stage-I generator becomes ``STAGE1_G`` (``--init-from`` of stage-II training); a stage-II one is copied."""
        if isinstance(other, StackGANStage1Generator):
            want = self.config.stage1_config()
            if other.config != want:
                raise ModelLoadError(f"the stage-I generator ({other.config}) does not fit this stage II, which "
                                     f"embeds {want}; set generator.stage1_ngf / nz / cond_dim to match")
            load_state_strict(self.STAGE1_G, other.state_dict(), source="the stage-I generator")
            return "the stage-I generator (STAGE1_G, frozen)"
        return super().init_from(other)

    def train(self, mode: bool = True) -> StackGANStage2Generator:
        """Train mode for Stage II; the frozen Stage-I generator stays in eval mode unless ``stage1_bn_drift``."""
        super().train(mode)
        if mode and not self.config.stage1_bn_drift:
            self.STAGE1_G.eval()
        return self

    @property
    def noise_dim(self) -> int:
        """z, Stage-I's CA noise, then Stage-II's."""
        return self.config.nz + self.STAGE1_G.config.cond_dim + self.config.cond_dim

    def synthesize(self, noise: torch.Tensor,
                   cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        nz, c1 = self.config.nz, self.STAGE1_G.config.cond_dim
        return self(noise[:, :nz], cond.sent_emb, noise[:, nz:nz + c1], noise[:, nz + c1:])[1], None


# ================================================================================================ discriminators


@dataclass
class StackGANDiscriminatorConfig(ConfigBase):
    """Settings of both StackGAN discriminators; defaults are the released COCO models (DF_DIM 96)."""

    ndf: int = 96
    cond_dim: int = 128

    def __post_init__(self) -> None:
        check_positive(ndf=self.ndf, cond_dim=self.cond_dim)


class _StackGANDiscriminator(OneWayDiscriminator, ModelBase):
    """Shared entry point: ``forward(image)`` -> features [B, 8ndf, 4, 4]; ``forward(image, mu)`` ->
    ``(cond_probs [B], uncond_probs [B] or None)`` with the heads run inside ``forward`` (so a DDP wrapper sees
    the whole computation); ``forward(features=f, mu=m)`` -> the same from precomputed features (mismatched
    pairs). The outputs are sigmoid probabilities, as the official heads return them."""

    config_class: ClassVar[type[ConfigBase]] = StackGANDiscriminatorConfig
    config: StackGANDiscriminatorConfig
    image_size: ClassVar[int]
    encode_img: nn.Sequential
    get_cond_logits: StackGANLogits
    get_uncond_logits: StackGANLogits | None

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``image [B, 3, S, S] -> features [B, 8*ndf, 4, 4]``."""
        size = self.image_size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image must be [batch, 3, {size}, {size}], got shape {tuple(image.shape)}")
        return self.encode_img(image)

    def heads(self, features: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features [B, 8ndf, 4, 4], mu [B, cond_dim]) -> (cond_probs [B], uncond_probs [B] or None)``."""
        if mu.shape != (features.shape[0], self.config.cond_dim):
            raise ValueError(f"mu must be [{features.shape[0]}, {self.config.cond_dim}], got shape {tuple(mu.shape)}")
        cond = self.get_cond_logits(features, mu)
        uncond = self.get_uncond_logits(features) if self.get_uncond_logits is not None else None
        return cond, uncond

    def forward(self, image: torch.Tensor | None = None, mu: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        return self.one_way(image, mu, features, "mu")

    logits = heads  # what OneWayDiscriminator.one_way calls


class StackGANStage1Discriminator(_StackGANDiscriminator):
    """Stage-I discriminator, the official ``STAGE1_D`` (64 px): ``encode_img`` = four 4x4 stride-2 convs
    3 -> ndf (LeakyReLU, no BN) -> 2ndf -> 4ndf -> 8ndf (BN + LeakyReLU), and the conditional head
    ``get_cond_logits`` only (the official ``get_uncond_logits`` is None)."""

    image_size: ClassVar[int] = 64

    def __init__(self, config: StackGANDiscriminatorConfig | None = None) -> None:
        super().__init__(config if config is not None else StackGANDiscriminatorConfig())
        ndf, c = self.config.ndf, self.config
        self.df_dim = ndf
        self.ef_dim = c.cond_dim
        self.encode_img = nn.Sequential(
            *_down(3, ndf, batch_norm=False),  # [B, ndf, 32, 32]
            *_down(ndf, ndf * 2),  # [B, 2ndf, 16, 16]
            *_down(ndf * 2, ndf * 4),  # [B, 4ndf, 8, 8]
            *_down(ndf * 4, ndf * 8),  # [B, 8ndf, 4, 4]
        )
        self.get_cond_logits = StackGANLogits(ndf, c.cond_dim, conditional=True)
        self.get_uncond_logits = None
        self.apply(stackgan_weights_init)


class StackGANStage2Discriminator(_StackGANDiscriminator):
    """Stage-II discriminator, the official ``STAGE2_D`` (256 px): six 4x4 stride-2 convs 3 -> ndf (no BN)
    -> 2ndf -> 4ndf -> 8ndf -> 16ndf -> 32ndf, then conv3x3 32ndf -> 16ndf -> 8ndf (BN + LeakyReLU each), and
    both heads ``get_cond_logits`` and ``get_uncond_logits``."""

    image_size: ClassVar[int] = 256

    def __init__(self, config: StackGANDiscriminatorConfig | None = None) -> None:
        super().__init__(config if config is not None else StackGANDiscriminatorConfig())
        ndf, c = self.config.ndf, self.config
        self.df_dim = ndf
        self.ef_dim = c.cond_dim
        self.encode_img = nn.Sequential(
            *_down(3, ndf, batch_norm=False),  # [B, ndf, 128, 128]
            *_down(ndf, ndf * 2),  # [B, 2ndf, 64, 64]
            *_down(ndf * 2, ndf * 4),  # [B, 4ndf, 32, 32]
            *_down(ndf * 4, ndf * 8),  # [B, 8ndf, 16, 16]
            *_down(ndf * 8, ndf * 16),  # [B, 16ndf, 8, 8]
            *_down(ndf * 16, ndf * 32),  # [B, 32ndf, 4, 4]
            *_same(ndf * 32, ndf * 16),  # [B, 16ndf, 4, 4]
            *_same(ndf * 16, ndf * 8),  # [B, 8ndf, 4, 4]
        )
        self.get_cond_logits = StackGANLogits(ndf, c.cond_dim, conditional=True)
        self.get_uncond_logits = StackGANLogits(ndf, c.cond_dim, conditional=False)
        self.apply(stackgan_weights_init)
