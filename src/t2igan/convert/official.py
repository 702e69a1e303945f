"""Import checkpoints released with the official AttnGAN / SSA-GAN / DF-GAN code.

The DAMSM encoders (``text_encoder*.pth``, ``image_encoder*.pth``) are plain pickled state dicts. They are read
with ``torch.load(..., weights_only=True)`` (no arbitrary objects are unpickled), a leading ``module.`` (from a
``DataParallel`` wrapper) is removed, and the tensors are loaded strictly: every official tensor is used, every
parameter and buffer is filled, and a missing key, an unknown key or a shape mismatch is an error that names
the key (and both shapes). The only tolerated gap is ``num_batches_tracked`` of BatchNorm layers, absent from
checkpoints written before PyTorch 0.4.1; those counters are set to 0, as PyTorch's own loader does.

:func:`convert_damsm` turns a pair of official encoders plus the ``captions.pickle`` they were trained with into
a t2igan directory (``text_encoder/``, ``image_encoder/``, ``vocab.json``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2igan.models.base import ModelLoadError
from t2igan.models.damsm import (
    ImageEncoder,
    ImageEncoderConfig,
    TextEncoder,
    TextEncoderConfig,
    fill_missing_bn_counters,
)
from t2igan.text.vocab import Vocabulary

__all__ = [
    "StateSource",
    "convert_damsm",
    "import_damsm_image_encoder",
    "import_damsm_text_encoder",
    "load_official_state",
    "load_state_exact",
    "strip_module_prefix",
]

StateSource = str | os.PathLike[str] | Mapping[str, torch.Tensor]

_PREFIX = "module."


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove a leading ``module.`` from every key that has one (``DataParallel``/DDP checkpoints)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
        if new in out:
            raise ValueError(f"state dict holds both {new!r} and {_PREFIX + new!r}")
        out[new] = value
    return out


def load_official_state(src: StateSource) -> tuple[dict[str, torch.Tensor], str]:
    """Read an official checkpoint (path or mapping) as ``(state dict without 'module.', source name)``."""
    if isinstance(src, Mapping):
        raw: Any = dict(src)
        source = "<state dict>"
    else:
        path = Path(src)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a readable torch checkpoint of plain tensors "
                                 f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(raw, Mapping):
            raise ModelLoadError(f"{path}: expected a state dict, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{source}: entry {key!r} is a {type(value).__name__}, expected a tensor "
                                 "(is this a state dict?)")
    return strip_module_prefix(raw), source


def _names(keys: list[str], limit: int = 20) -> str:
    more = len(keys) - limit
    return ", ".join(keys[:limit]) + (f" (and {more} more)" if more > 0 else "")


def load_state_exact(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Strict load naming every missing and unknown key and, for a shape mismatch, the key and both shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensors: {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} tensors: {_names(unexpected)}")
    if parts:
        raise ModelLoadError(f"{source}: does not fit {type(module).__name__}: " + "; ".join(parts))
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ModelLoadError(f"{source}: tensor {key!r} has shape {tuple(value.shape)}, "
                                 f"{type(module).__name__} expects {tuple(own[key].shape)}")
    module.load_state_dict(dict(state), strict=True)


def _require(state: Mapping[str, torch.Tensor], key: str, ndim: int, source: str, what: str) -> torch.Tensor:
    if key not in state:
        raise ModelLoadError(f"{source}: missing tensor {key!r} (not an official {what}?); "
                             f"keys: {_names(sorted(state))}")
    value = state[key]
    if value.dim() != ndim:
        raise ModelLoadError(f"{source}: tensor {key!r} has shape {tuple(value.shape)}, expected {ndim} dims")
    return value


def import_damsm_text_encoder(src: StateSource, *, vocab: Vocabulary | None = None) -> TextEncoder:
    """Build a :class:`TextEncoder` from an official DAMSM ``text_encoder*.pth`` (path or state dict).

    The sizes are read from the tensors: ``vocab_size`` and ``word_dim`` from ``encoder.weight``, ``hidden``
    from ``rnn.weight_hh_l0``. With ``vocab``, its size must equal the embedding's row count. The encoder
    is returned in eval mode.
    """
    state, source = load_official_state(src)
    emb = _require(state, "encoder.weight", 2, source, "DAMSM text encoder")
    hh = _require(state, "rnn.weight_hh_l0", 2, source, "DAMSM text encoder")
    n_words, word_dim = emb.shape
    if hh.shape[0] == 3 * hh.shape[1]:
        raise ModelLoadError(f"{source}: 'rnn.weight_hh_l0' has shape {tuple(hh.shape)}, a GRU; only the LSTM "
                             "DAMSM text encoder (shape (4h, h)) is supported")
    if vocab is not None and len(vocab) != n_words:
        raise ValueError(
            f"vocabulary size mismatch: the vocabulary has {len(vocab)} words but the text encoder "
            f"{source} embeds {n_words}; use the captions.pickle the encoder was trained with (its ixtoword "
            "is authoritative; a dictionary rebuilt from the caption text has a different size and order)")
    config = TextEncoderConfig(vocab_size=int(n_words), word_dim=int(word_dim), hidden=2 * int(hh.shape[1]))
    model = TextEncoder(config)
    load_state_exact(model, state, source=source)
    return model.eval()


def import_damsm_image_encoder(src: StateSource) -> ImageEncoder:
    """Build an Inception-v3 :class:`ImageEncoder` from an official DAMSM ``image_encoder*.pth``.

    ``embed_dim`` is read from ``emb_cnn_code.weight``. Files with or without ``module.`` and 2018 files without
    ``num_batches_tracked`` load; every other key is required. The encoder is returned in eval mode.
    """
    state, source = load_official_state(src)
    code = _require(state, "emb_cnn_code.weight", 2, source, "DAMSM image encoder")
    model = ImageEncoder(ImageEncoderConfig(backbone="inception_v3", embed_dim=int(code.shape[0])))
    state = fill_missing_bn_counters(model, state)
    load_state_exact(model, state, source=source)
    return model.eval()


def convert_damsm(text_encoder_path: str | os.PathLike[str],
                  image_encoder_path: str | os.PathLike[str] | None = None,
                  captions_path: str | os.PathLike[str] | None = None, *,
                  out_dir: str | os.PathLike[str]) -> Path:
    """Convert official DAMSM encoders into ``out_dir``; returns ``out_dir``.

    Writes ``text_encoder/`` and (with ``image_encoder_path``) ``image_encoder/`` in the
    ``save_pretrained`` format, and (with ``captions_path``, the official ``captions.pickle``) ``vocab.json``
    after checking the vocabulary size against the text encoder. Everything is imported and checked before
    anything is written.
    """
    vocab = Vocabulary.from_captions_pickle(captions_path) if captions_path is not None else None
    text = import_damsm_text_encoder(text_encoder_path, vocab=vocab)
    image = import_damsm_image_encoder(image_encoder_path) if image_encoder_path is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text.save_pretrained(out / "text_encoder")
    if image is not None:
        image.save_pretrained(out / "image_encoder")
    if vocab is not None:
        vocab.save(out / "vocab.json")
    return out
