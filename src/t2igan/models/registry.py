"""Families and the exported model directory.

``FAMILIES`` maps a family name to its generator/discriminator classes. An exported model directory (what
``T2IPipeline.from_pretrained`` opens, what ``t2igan convert`` and training write) holds::

    pipeline.json        {"format", "family", "t2igan_version", "components": {name: class}, "words_num", ...}
    generator/           config.json + model.safetensors
    text_encoder/        config.json + model.safetensors
    discriminator/       (optional) config.json + model.safetensors
    vocab.json

:func:`write_model_dir` and :func:`read_model_dir` are the only code that knows this layout. Reading is strict:
a missing file, a config with an unknown key or wrong type, a truncated weights file or a shape mismatch is a
:class:`~t2igan.models.base.ModelLoadError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from t2igan.models.attngan import AttnGANDiscriminator, AttnGANDiscriminators, AttnGANGenerator
from t2igan.models.base import ModelBase, ModelLoadError
from t2igan.models.damsm import ImageEncoder, TextEncoder
from t2igan.models.dfgan import DFGANDiscriminator, DFGANGenerator
from t2igan.models.ssagan import SSAGANDiscriminator, SSAGANGenerator
from t2igan.models.stackgan import (
    StackGANStage1Discriminator,
    StackGANStage1Generator,
    StackGANStage2Discriminator,
    StackGANStage2Generator,
)
from t2igan.registry import Registry
from t2igan.text.vocab import Vocabulary
from t2igan.utils.io import read_json, write_json_atomic

__all__ = ["Family", "FAMILIES", "COMPONENT_CLASSES", "ModelDir", "write_model_dir", "read_model_dir",
           "PIPELINE_FORMAT", "PRETRAINED_ROOT", "pretrained_names", "resolve_model_dir"]

PIPELINE_FORMAT = "t2igan.pipeline/1"

# models shipped inside the package: t2igan/pretrained/NAME/ (model directories with their training record)
PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained_names() -> list[str]:
    """Names of the models shipped with the package (``T2IPipeline.from_pretrained(name)``)."""
    if not PRETRAINED_ROOT.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / "pipeline.json").is_file())


def resolve_model_dir(name_or_dir: str | os.PathLike[str]) -> Path:
    """A model directory path, or the name of a shipped model (e.g. ``"synthbirds"``), as a directory path.

    An existing path wins over a shipped name; anything else is a :class:`ModelLoadError` that lists the
    shipped models.
    """
    d = Path(name_or_dir)
    if d.exists():
        return d
    key = str(name_or_dir)
    if key in pretrained_names():
        return PRETRAINED_ROOT / key
    shipped = ", ".join(pretrained_names()) or "none"
    raise ModelLoadError(f"model directory not found: {d} (and no shipped model has that name; shipped: {shipped})")


SizeFields = Callable[[int, "int | None"], tuple[dict[str, Any], dict[str, Any]]]


def _plain_sizes(image_size: int, cond_dim: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = {"image_size": image_size} | ({"cond_dim": cond_dim} if cond_dim else {})
    return fields, dict(fields)


def _attngan_stages(image_size: int) -> int:
    stages = {64: 1, 128: 2, 256: 3}
    if image_size not in stages:
        raise ValueError(f"AttnGAN makes 64, 128 or 256 px images (1, 2 or 3 stages), not {image_size}")
    return stages[image_size]


def _attngan_sizes(image_size: int, cond_dim: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    text = {"text_dim": cond_dim} if cond_dim else {}
    g = {"branch_num": _attngan_stages(image_size)} | text | ({"words_dim": cond_dim} if cond_dim else {})
    return g, {"image_size": image_size} | text


def _stackgan_sizes(image_size: int, cond_dim: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    _stackgan_classes(image_size)
    return ({"text_dim": cond_dim} if cond_dim else {}), {}


def _stackgan_classes(image_size: int) -> tuple[type[ModelBase], type[ModelBase]]:
    if image_size == 64:
        return StackGANStage1Generator, StackGANStage1Discriminator
    if image_size == 256:
        return StackGANStage2Generator, StackGANStage2Discriminator
    raise ValueError(f"StackGAN makes 64 px images (stage I) or 256 px images (stage II), not {image_size}")


@dataclass(frozen=True)
class Family:
    """A family's networks. ``classes(image_size)`` gives the generator and discriminator classes for a size
    (StackGAN: stage I at 64 px, stage II at 256 px); ``sizes(image_size, cond_dim)`` the fields of their configs
    that a run's data and text encoder fix (default: ``image_size`` and ``cond_dim`` for both)."""

    name: str
    generator: type[ModelBase]
    discriminator: type[ModelBase]
    has_masks: bool  # the generator's synthesize returns maps (SSA-GAN masks, AttnGAN word attention)
    sizes: SizeFields = _plain_sizes
    select: Callable[[int], tuple[type[ModelBase], type[ModelBase]]] | None = None

    def classes(self, image_size: int) -> tuple[type[ModelBase], type[ModelBase]]:
        return self.select(image_size) if self.select is not None else (self.generator, self.discriminator)


FAMILIES: Registry[Family] = Registry("family")
FAMILIES.register("ssagan", Family("ssagan", SSAGANGenerator, SSAGANDiscriminator, has_masks=True))
FAMILIES.register("dfgan", Family("dfgan", DFGANGenerator, DFGANDiscriminator, has_masks=False))
FAMILIES.register("attngan", Family("attngan", AttnGANGenerator, AttnGANDiscriminators, has_masks=True,
                                    sizes=_attngan_sizes))
FAMILIES.register("stackgan", Family("stackgan", StackGANStage2Generator, StackGANStage2Discriminator,
                                     has_masks=False, sizes=_stackgan_sizes, select=_stackgan_classes))

COMPONENT_CLASSES: dict[str, type[ModelBase]] = {
    cls.__name__: cls
    for cls in (SSAGANGenerator, SSAGANDiscriminator, DFGANGenerator, DFGANDiscriminator, TextEncoder,
                ImageEncoder, AttnGANGenerator, AttnGANDiscriminators, AttnGANDiscriminator,
                StackGANStage1Generator, StackGANStage2Generator, StackGANStage1Discriminator,
                StackGANStage2Discriminator)
}


@dataclass
class ModelDir:
    family: str
    components: dict[str, ModelBase]
    vocab: Vocabulary | None  # None only for a model without a text encoder (see _external_condition)
    meta: dict[str, Any]


def _external_condition(meta: dict[str, Any]) -> bool:
    """Whether ``meta`` records that the generator takes precomputed embeddings (e.g. StackGAN's
    ``"condition": "char-cnn-rnn"``) rather than those of a DAMSM text encoder: only then may a model directory
    lack ``text_encoder/`` and ``vocab.json``."""
    condition = meta.get("condition")
    return isinstance(condition, str) and condition not in ("", "damsm")


def write_model_dir(out_dir: str | os.PathLike[str], family: str, components: dict[str, ModelBase],
                    vocab: Vocabulary | None, **meta: Any) -> Path:
    """Write an exported model directory; ``components`` needs at least 'generator' and 'text_encoder'.

    The one exception: a generator conditioned on precomputed embeddings, recorded as ``condition=NAME`` (e.g.
    ``"char-cnn-rnn"``), may come without a text encoder and then without a vocabulary (``vocab=None``).
    """
    from t2igan import __version__

    FAMILIES.get(family)
    if "generator" not in components:
        raise ValueError("a model directory needs a 'generator' component")
    if "text_encoder" not in components and not _external_condition(meta):
        raise ValueError("a model directory needs a 'text_encoder' component (or, for a generator conditioned on "
                         "precomputed embeddings, condition= naming them)")
    if "text_encoder" in components and vocab is None:
        raise ValueError("a model directory with a text encoder needs its vocabulary")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, module in components.items():
        module.save_pretrained(out / name)
    if vocab is not None:
        vocab.save(out / "vocab.json")
    write_json_atomic(out / "pipeline.json", {
        "format": PIPELINE_FORMAT, "family": family, "t2igan_version": __version__,
        "components": {name: type(m).__name__ for name, m in components.items()}, **meta})
    return out


def read_model_dir(directory: str | os.PathLike[str], *, components: tuple[str, ...] | None = None,
                   map_location: str | torch.device = "cpu") -> ModelDir:
    """Read an exported model directory (all components, or only those named); a shipped model's name works too."""
    d = resolve_model_dir(directory)
    if not d.is_dir():
        raise ModelLoadError(f"model directory not found: {d}")
    path = d / "pipeline.json"
    if not path.is_file():
        raise ModelLoadError(f"{path} not found: {d} is not a t2igan model directory "
                             "(official checkpoints are imported with `t2igan convert`)")
    try:
        meta = read_json(path)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if not isinstance(meta, dict) or meta.get("format") != PIPELINE_FORMAT:
        raise ModelLoadError(f"{path}: not a {PIPELINE_FORMAT} file")
    family = meta.get("family")
    if family not in FAMILIES:
        raise ModelLoadError(f"{path}: unknown family {family!r}; known: {', '.join(FAMILIES.names())}")
    listed = meta.get("components")
    if (not isinstance(listed, dict) or "generator" not in listed
            or ("text_encoder" not in listed and not _external_condition(meta))):
        raise ModelLoadError(f"{path}: 'components' must name at least 'generator' and 'text_encoder' (or "
                             "'condition' must name the precomputed embeddings the generator takes)")
    wanted = components if components is not None else tuple(listed)
    loaded: dict[str, ModelBase] = {}
    for name in wanted:
        if name not in listed:
            raise ModelLoadError(f"{path}: has no {name!r} component (it has {', '.join(listed)})")
        cls = COMPONENT_CLASSES.get(listed[name])
        if cls is None:
            raise ModelLoadError(f"{path}: component {name!r} has unknown class {listed[name]!r}")
        loaded[name] = cls.from_pretrained(d / name, map_location=map_location)
    vocab_path = d / "vocab.json"
    vocab: Vocabulary | None = None
    if "text_encoder" in listed or vocab_path.exists():  # a model without a text encoder needs no vocabulary
        if not vocab_path.is_file():
            raise ModelLoadError(f"vocabulary file not found: {vocab_path}")
        try:
            vocab = Vocabulary.load(vocab_path)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    te = loaded.get("text_encoder")
    if te is not None and vocab is not None and te.config.vocab_size != len(vocab):
        raise ModelLoadError(f"{vocab_path}: has {len(vocab)} words but the text encoder embeds "
                             f"{te.config.vocab_size}")
    return ModelDir(family, loaded, vocab, meta)
