"""ModelBase: a module built from a dataclass config, saved as ``config.json`` + ``model.safetensors``.

``save_pretrained(dir)`` writes both files atomically; ``from_pretrained(dir)`` rebuilds the module from the
config and loads the weights strictly. Every failure names the file and what is wrong: a missing file, a config
with an unknown key or a wrong type, a truncated or corrupt weights file, a missing or unexpected tensor, a
shape mismatch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from t2igan.config import ConfigBase, ConfigError, from_dict, to_dict
from t2igan.utils.io import atomic_write, read_json, write_json_atomic

__all__ = ["ModelBase", "ModelLoadError", "CONFIG_NAME", "WEIGHTS_NAME", "load_state_dict_file",
           "save_state_dict_file", "load_state_strict", "TextCondition", "GeneratorBase"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound="ModelBase")


class ModelLoadError(RuntimeError):
    """A saved model cannot be loaded; the message names the file and the problem."""


def save_state_dict_file(state: dict[str, torch.Tensor], path: str | os.PathLike[str],
                         metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors, atomically (contiguous CPU copies; shared storage is split)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    data = save(tensors, metadata=metadata)
    with atomic_write(path, "wb") as f:
        f.write(data)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing, truncated or corrupt file is a :class:`ModelLoadError`."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    try:
        return load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for truncation and bad headers
        raise ModelLoadError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from exc


class ModelBase(nn.Module):
    """Base of every network: ``config_class`` is its dataclass config, ``self.config`` the instance."""

    config_class: ClassVar[type[ConfigBase]]

    def __init__(self, config: ConfigBase) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(directory / CONFIG_NAME, {"class": type(self).__name__, **to_dict(self.config)})
        save_state_dict_file(self.state_dict(), directory / WEIGHTS_NAME,
                             metadata={"class": type(self).__name__})
        return directory

    @classmethod
    def load_config(cls, directory: str | os.PathLike[str]) -> ConfigBase:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise ModelLoadError(f"config file not found: {path}")
        try:
            data: dict[str, Any] = read_json(path)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"{path}: expected a JSON object")
        data = dict(data)
        saved_class = data.pop("class", cls.__name__)
        if saved_class != cls.__name__:
            raise ModelLoadError(f"{path}: holds a {saved_class}, not a {cls.__name__}")
        try:
            return from_dict(cls.config_class, data, source=str(path))
        except ConfigError as exc:
            raise ModelLoadError(str(exc)) from exc

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike[str],
                        map_location: str | torch.device = "cpu") -> M:
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelLoadError(f"model directory not found: {directory}")
        config = cls.load_config(directory)
        model = cls(config)
        state = load_state_dict_file(directory / WEIGHTS_NAME)
        load_state_strict(model, state, source=str(directory / WEIGHTS_NAME))
        return model.to(map_location)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``module``: every tensor used, every parameter and buffer filled, shapes equal."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (first: {', '.join(unexpected[:3])})")
        raise ModelLoadError(f"{source}: does not fit {type(module).__name__}: " + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelLoadError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, "
                                 f"the model expects {tuple(own[k].shape)}")
    module.load_state_dict(state, strict=True)



@dataclass
class TextCondition:
    """A batch of captions as a generator sees them (what ``TextEncoder.encode`` returns).

    ``sent_emb`` [B, D]: the sentence embedding (or, for StackGAN models trained on them, precomputed char-CNN-RNN
    embeddings); ``words_emb`` [B, D, T] and ``word_mask`` [B, T] (True at padding) for word-attention families.
    """

    sent_emb: torch.Tensor
    words_emb: torch.Tensor | None = None
    word_mask: torch.Tensor | None = None

    def detached(self) -> TextCondition:
        return TextCondition(self.sent_emb.detach().float(),
                             None if self.words_emb is None else self.words_emb.detach().float(), self.word_mask)


class GeneratorBase(ModelBase):
    """A family's generator as the pipeline, the trainer's samples and the evaluation call it.

    ``noise_dim`` is the length of one image's noise vector (families with conditioning augmentation append its
    ε to the z noise, so an image is a function of its noise vector alone); :meth:`synthesize` maps
    ``(noise [B, noise_dim], TextCondition)`` to the final image [B, 3, S, S] in [-1, 1] and the family's
    per-stage maps (SSA-GAN: each block's mask [B, 1, h, w]; AttnGAN: word attention [B, T, h, w] per refinement
    stage) or ``None``. ``forward`` keeps each family's official signature.
    """

    # what a new training run must start from (``train.init_from``), or None
    needs_init_from: ClassVar[str | None] = None

    @property
    def noise_dim(self) -> int:
        raise NotImplementedError

    def synthesize(self, noise: torch.Tensor,
                   cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        raise NotImplementedError

    def synthesize_fused(self, noise: torch.Tensor,
                         cond: TextCondition) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """:meth:`synthesize` arranged for frozen-weight inference (what ``GeneratorRunner(compile=True)``
        compiles): the same outputs to float rounding. Families whose blocks have many small conditioning MLPs
        evaluate them together here (:func:`t2igan.models.layers.grouped_affine_mlps`); by default it is
        :meth:`synthesize` itself."""
        return self.synthesize(noise, cond)

    def feature_bytes_per_image(self) -> int | None:
        """Bytes of the largest float32 feature map the generator makes for one image, or None if unknown
        (:class:`t2igan.models.inference.GeneratorRunner` splits CPU batches so that a chunk's maps stay in cache)."""
        return None

    def init_from(self, other: ModelBase) -> str:
        """Copy the weights of ``other`` (a trained generator) into this one; returns what was copied.

        The same class and config: everything. Families with stages override this (StackGAN stage II takes a
        stage-I generator)."""
        if type(other) is not type(self) or other.config != self.config:
            raise ModelLoadError(f"cannot start a {type(self).__name__} ({self.config}) from a "
                                 f"{type(other).__name__} ({other.config})")
        load_state_strict(self, other.state_dict(), source=f"the {type(other).__name__} to start from")
        return "the whole generator"
