"""DAMSM text and image encoders (the AttnGAN "Deep Attentional Multimodal Similarity Model" pair).

:class:`TextEncoder` is the bidirectional LSTM used by AttnGAN, SSA-GAN and DF-GAN. Its submodules carry the
official parameter names (``encoder``, ``rnn``), so a released ``text_encoder*.pth`` loads without renaming
(see :mod:`t2igan.convert.official`). Unlike the official encoder it accepts batches in any order: it packs
with ``enforce_sorted=False`` and returns every output in the order of its input.

:class:`ImageEncoder` maps images in [-1, 1] to region features and a global code in the same space as the
text encoder's word and sentence embeddings. Two trunks:

* ``inception_v3``: the torchvision Inception-v3 layers up to ``Mixed_7c`` under their torchvision names, so
  the official ``image_encoder*.pth`` keys are exactly this module's state-dict keys. Region features come
  from ``Mixed_6e`` (17x17 at 299 px), the global code from ``Mixed_7c`` average-pooled. The images are
  resized bilinearly to ``input_size`` and are *not* ImageNet-normalised, as the released encoders were
  trained. :func:`load_inception_trunk` fills the trunk from a local torchvision ImageNet file (nothing is
  ever downloaded).
* ``light``: a small CNN for small images (e.g. SynthBirds at 64 px), trained from scratch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from t2igan.config import ConfigBase
from t2igan.models.base import ModelBase, ModelLoadError, TextCondition

__all__ = [
    "INCEPTION_TRUNK",
    "INCEPTION_WEIGHTS_FILES",
    "ImageEncoder",
    "ImageEncoderConfig",
    "TextEncoder",
    "TextEncoderConfig",
    "fill_missing_bn_counters",
    "load_inception_trunk",
]

# torchvision Inception-v3 children kept by the image encoder, in forward order.
INCEPTION_TRUNK: tuple[str, ...] = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)

# File names torchvision gives its ImageNet Inception-v3 weights in ``<hub dir>/checkpoints`` (current first).
INCEPTION_WEIGHTS_FILES: tuple[str, ...] = ("inception_v3_google-0cc3c7bd.pth", "inception_v3_google-1a9a5a14.pth")

_PROJECTION_INIT = 0.1


# ================================================================================================ text encoder


@dataclass
class TextEncoderConfig(ConfigBase):
    """Bidirectional one-layer LSTM over word embeddings; ``hidden`` counts both directions together."""

    vocab_size: int = 5450
    word_dim: int = 300
    hidden: int = 256
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")
        if self.word_dim < 1:
            raise ValueError(f"word_dim must be positive, got {self.word_dim}")
        if self.hidden < 2 or self.hidden % 2:
            raise ValueError(f"hidden is the size over both LSTM directions and must be even, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class TextEncoder(ModelBase):
    """DAMSM text encoder: ``(captions [B, T], lengths [B]) -> (words_emb [B, H, T'], sent_emb [B, H])``.

    ``T'`` is the longest length in the batch; ``words_emb`` is zero at padded positions. ``sent_emb`` is the
    final hidden state of the forward direction followed by that of the backward direction. Dropout acts on the
    word embeddings in train mode only. The initial LSTM state is zero.
    """

    config_class: ClassVar[type[ConfigBase]] = TextEncoderConfig
    config: TextEncoderConfig

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        super().__init__(config if config is not None else TextEncoderConfig())
        c = self.config
        self.encoder = nn.Embedding(c.vocab_size, c.word_dim)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = nn.LSTM(c.word_dim, c.hidden // 2, num_layers=1, batch_first=True, bidirectional=True)
        nn.init.uniform_(self.encoder.weight, -_PROJECTION_INIT, _PROJECTION_INIT)

    @property
    def embed_dim(self) -> int:
        return self.config.hidden

    def forward(self, captions: torch.Tensor,
                lengths: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if captions.dim() != 2:
            raise ValueError(f"captions must be [batch, words], got shape {tuple(captions.shape)}")
        batch, width = captions.shape
        lengths_cpu = torch.as_tensor(lengths).detach().to("cpu", torch.int64).reshape(-1)
        if lengths_cpu.numel() != batch:
            raise ValueError(f"got {lengths_cpu.numel()} lengths for a batch of {batch} captions")
        empty = (lengths_cpu <= 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"captions at batch positions {empty} have length <= 0; every caption needs a word")
        too_long = (lengths_cpu > width).nonzero().flatten().tolist()
        if too_long:
            raise ValueError(f"lengths at batch positions {too_long} exceed the caption width {width}")
        emb = self.drop(self.encoder(captions))
        packed = pack_padded_sequence(emb, lengths_cpu, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.rnn(packed)  # h_n: [2, B, H/2], already in input order
        words, _ = pad_packed_sequence(out, batch_first=True)  # [B, T', H], input order, zero padding
        words_emb = words.transpose(1, 2).contiguous()
        sent_emb = h_n.transpose(0, 1).reshape(batch, -1)
        return words_emb, sent_emb

    def encode(self, captions: torch.Tensor, lengths: torch.Tensor | Sequence[int]) -> TextCondition:
        """The captions as a generator's condition: both embeddings and the padding mask [B, T'] (True at padding)."""
        words_emb, sent_emb = self(captions, lengths)
        lengths_dev = torch.as_tensor(lengths).to(words_emb.device).reshape(-1, 1)
        mask = torch.arange(words_emb.shape[-1], device=words_emb.device)[None, :] >= lengths_dev
        return TextCondition(sent_emb, words_emb, mask)


# ================================================================================================ image encoder


@dataclass
class ImageEncoderConfig(ConfigBase):
    """Image encoder settings.

    ``input_size``: images are resized (bilinear, ``align_corners=False``) to this square size before the
    trunk. Keep 299 for ``inception_v3`` (the released encoders); for ``light`` use the image size, e.g. 64
    (:meth:`light` builds such a config). ``freeze_trunk`` applies to ``inception_v3`` only.
    """

    backbone: Literal["inception_v3", "light"] = "inception_v3"
    embed_dim: int = 256
    input_size: int = 299
    light_width: int = 64
    # how the light trunk's last map becomes the global code: mean (average pooling, as Inception's) or max (a
    # small object on a large background is not averaged away)
    light_pool: Literal["mean", "max"] = "mean"
    freeze_trunk: bool = True

    def __post_init__(self) -> None:
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}")
        if self.light_width < 1:
            raise ValueError(f"light_width must be positive, got {self.light_width}")
        if self.backbone == "inception_v3":
            final = _inception_sizes(self.input_size)[1] if self.input_size >= 75 else 0
            if final != 8:
                raise ValueError(
                    f"input_size {self.input_size} gives a {final}x{final} Mixed_7c map; the inception_v3 "
                    "encoder average-pools an 8x8 map (use 299)")
        elif self.input_size < 16:
            raise ValueError(f"input_size must be at least 16 for the light backbone, got {self.input_size}")

    @classmethod
    def light(cls, input_size: int = 64, width: int = 64, embed_dim: int = 256) -> ImageEncoderConfig:
        """Config of the small from-scratch CNN for ``input_size`` px images."""
        return cls(backbone="light", embed_dim=embed_dim, input_size=input_size, light_width=width)


def _conv_out(n: int, kernel: int, stride: int, pad: int = 0) -> int:
    return (n + 2 * pad - kernel) // stride + 1


def _inception_sizes(size: int) -> tuple[int, int]:
    """Side of the Mixed_6e and Mixed_7c maps for a ``size`` px Inception-v3 input."""
    n = _conv_out(size, 3, 2)  # Conv2d_1a_3x3
    n = _conv_out(n, 3, 1)  # Conv2d_2a_3x3 (2b keeps the size)
    n = _conv_out(n, 3, 2)  # max pool
    n = _conv_out(n, 3, 1)  # Conv2d_4a_3x3 (3b is 1x1)
    n = _conv_out(n, 3, 2)  # max pool (Mixed_5* keep the size)
    n6 = _conv_out(n, 3, 2)  # Mixed_6a
    n7 = _conv_out(n6, 3, 2)  # Mixed_7a
    return n6, n7


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class ImageEncoder(ModelBase):
    """DAMSM image encoder: images [B, 3, H, W] in [-1, 1] -> (regions [B, E, h, w], code [B, E]).

    With ``freeze_trunk`` (``inception_v3`` only) the trunk parameters do not require gradients and the trunk
    stays in eval mode even when the encoder is switched to train mode. This deliberately departs from the
    official fine-tuning code, which left the frozen Inception in train mode so its BatchNorm running
    statistics drifted with every batch. Gradients still flow through the trunk to the input images.

    The ``light`` trunk is always trained (``freeze_trunk`` is ignored): it has no pretrained weights.
    """

    config_class: ClassVar[type[ConfigBase]] = ImageEncoderConfig
    config: ImageEncoderConfig

    def __init__(self, config: ImageEncoderConfig | None = None) -> None:
        super().__init__(config if config is not None else ImageEncoderConfig())
        c = self.config
        if c.backbone == "inception_v3":
            from torchvision.models import inception_v3

            net = inception_v3(weights=None, aux_logits=False, init_weights=False)
            for name in INCEPTION_TRUNK:
                setattr(self, name, getattr(net, name))
            self._trunk_names: tuple[str, ...] = INCEPTION_TRUNK
            region_channels, code_channels = 768, 2048
        else:
            w = c.light_width
            self.stem = _conv_bn_relu(3, w)
            widths = [w, 2 * w, 4 * w, 8 * w]
            c_in = w
            for i, c_out in enumerate(widths, 1):
                setattr(self, f"stage{i}", nn.Sequential(_conv_bn_relu(c_in, c_out, 2), _conv_bn_relu(c_out, c_out)))
                c_in = c_out
            self._trunk_names = ("stem", "stage1", "stage2", "stage3", "stage4")
            region_channels, code_channels = 4 * w, 8 * w
        self.emb_features = nn.Conv2d(region_channels, c.embed_dim, kernel_size=1, bias=False)
        self.emb_cnn_code = nn.Linear(code_channels, c.embed_dim)
        nn.init.uniform_(self.emb_features.weight, -_PROJECTION_INIT, _PROJECTION_INIT)
        nn.init.uniform_(self.emb_cnn_code.weight, -_PROJECTION_INIT, _PROJECTION_INIT)
        if self.trunk_frozen:
            for p in self.trunk_parameters():
                p.requires_grad_(False)
        self.train()

    # -- structure ----------------------------------------------------------------------------------------
    @property
    def trunk_frozen(self) -> bool:
        return self.config.backbone == "inception_v3" and self.config.freeze_trunk

    def trunk_modules(self) -> list[nn.Module]:
        return [getattr(self, n) for n in self._trunk_names]

    def trunk_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.trunk_modules() for p in m.parameters()]

    def projection_parameters(self) -> list[nn.Parameter]:
        return [*self.emb_features.parameters(), *self.emb_cnn_code.parameters()]

    @property
    def region_shape(self) -> tuple[int, int]:
        """(h, w) of the region features for the configured ``input_size``."""
        size = self.config.input_size
        if self.config.backbone == "inception_v3":
            n = _inception_sizes(size)[0]
        else:
            n = size
            for _ in range(3):
                n = _conv_out(n, 3, 2, 1)
        return n, n

    @property
    def num_regions(self) -> int:
        h, w = self.region_shape
        return h * w

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.trunk_frozen:
            for m in self.trunk_modules():
                m.eval()
        return self

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [batch, 3, height, width], got shape {tuple(images.shape)}")
        size = self.config.input_size
        x = images
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.config.backbone == "inception_v3":
            return self._forward_inception(x)
        return self._forward_light(x)

    def _forward_inception(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e"):
            x = getattr(self, name)(x)
        regions = self.emb_features(x)
        x = self.Mixed_7a(x)
        x = self.Mixed_7b(x)
        x = self.Mixed_7c(x)
        x = F.avg_pool2d(x, kernel_size=8)
        code = self.emb_cnn_code(x.flatten(1))
        return regions, code

    def _forward_light(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        regions = self.emb_features(x)
        x = self.stage4(x)
        pooled = x.amax(dim=(2, 3)) if self.config.light_pool == "max" else x.mean(dim=(2, 3))
        code = self.emb_cnn_code(pooled)
        return regions, code


# ================================================================================================ helpers


def fill_missing_bn_counters(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add ``num_batches_tracked`` = 0 for every BatchNorm of ``module`` that ``state`` lacks it for.

    Checkpoints written before PyTorch 0.4.1 have no such keys; PyTorch's own loader fills them the same way.
    Returns a new dict; ``state`` is not modified.
    """
    out = dict(state)
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def _inception_candidates(path: str | os.PathLike[str] | None) -> list[Path]:
    if path is not None:
        return [Path(path)]
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [hub / name for name in INCEPTION_WEIGHTS_FILES]


def load_inception_trunk(encoder: ImageEncoder, path: str | os.PathLike[str] | None = None) -> Path:
    """Fill the Inception-v3 trunk of ``encoder`` with torchvision's ImageNet weights from a local file.

    ``path`` defaults to torchvision's cache ``torch.hub.get_dir()/checkpoints/inception_v3_google-*.pth``.
    ``AuxLogits.*`` and ``fc.*`` are ignored, a missing ``num_batches_tracked`` counter is set to 0, and
    every other trunk tensor must be present with the right shape. The projections are left untouched.
    Nothing is downloaded: a missing file is a :class:`FileNotFoundError` listing every path looked at.
    Returns the path that was read.
    """
    if not isinstance(encoder, ImageEncoder) or encoder.config.backbone != "inception_v3":
        raise ValueError("load_inception_trunk needs an ImageEncoder with the inception_v3 backbone")
    candidates = _inception_candidates(path)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        looked = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"torchvision Inception-v3 ImageNet weights not found (looked at: {looked}); place the file there "
            "or pass its path (t2igan never downloads weights)")
    try:
        raw = torch.load(found, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{found}: not a readable torch weights file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{found}: expected a state dict, got {type(raw).__name__}")
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise ModelLoadError(f"{found}: expected a state dict with string keys, found {bad_keys[:3]!r}")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "fc."))}
    trunk = {k: v for k, v in encoder.state_dict().items() if k.split(".", 1)[0] in INCEPTION_TRUNK}
    state = fill_missing_bn_counters(encoder, state)
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ModelLoadError(f"{found}: entry {k!r} is a {type(v).__name__}, not a tensor")
        if k in trunk and tuple(v.shape) != tuple(trunk[k].shape):
            raise ModelLoadError(f"{found}: tensor {k!r} has shape {tuple(v.shape)}, "
                                 f"the trunk expects {tuple(trunk[k].shape)}")
    missing = [k for k in trunk if k not in state]
    unexpected = [k for k in state if k not in trunk]
    if missing:
        raise ModelLoadError(f"{found}: missing {len(missing)} Inception-v3 trunk tensors: "
                             + _name_list(missing))
    if unexpected:
        raise ModelLoadError(f"{found}: unexpected tensors (not in the Inception-v3 trunk): "
                             + _name_list(unexpected))
    encoder.load_state_dict(state, strict=False)
    return found


def _name_list(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")
