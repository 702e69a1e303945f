"""Import checkpoints released with the official AttnGAN / StackGAN / SSA-GAN / DF-GAN code.

The DAMSM encoders (``text_encoder*.pth``, ``image_encoder*.pth``) are plain pickled state dicts. They are read
with ``torch.load(..., weights_only=True)`` (no arbitrary objects are unpickled), a leading ``module.`` (from a
``DataParallel`` wrapper) is removed, and the tensors are loaded strictly: every official tensor is used, every
parameter and buffer is filled, and a missing key, an unknown key or a shape mismatch is an error that names
the key (and both shapes). The only tolerated gap is ``num_batches_tracked`` of BatchNorm layers, absent from
checkpoints written before PyTorch 0.4.1; those counters are set to 0, as PyTorch's own loader does.

:func:`convert_damsm` turns a pair of official encoders plus the ``captions.pickle`` they were trained with into
a t2igan directory (``text_encoder/``, ``image_encoder/``, ``vocab.json``).

:func:`import_ssagan` reads SSA-GAN ``netG_*.pth`` / ``netD_*.pth`` (bare state dicts, usually ``module.``-prefixed)
and :func:`import_dfgan` DF-GAN (CVPR 2022) ``state_epoch_*.pth`` files (``{'model': {'netG', 'netD', 'netC'},
'optimizers': ..., 'epoch': ...}``) or bare ``netG`` state dicts; both infer the network sizes from the tensors.
:func:`import_attngan` reads AttnGAN ``netG_epoch_*.pth`` / released ``bird_AttnGAN2.pth``, ``coco_AttnGAN2.pth`` (and
``netD0.pth`` .. ``netD2.pth``), :func:`import_stackgan` StackGAN-Pytorch ``netG_epoch_*.pth`` / ``netD_epoch_*.pth``
of stage I or II (a stage-II netG holds ``STAGE1_G.*``); they infer the sizes from the tensors too, and set absent
``num_batches_tracked`` counters to 0 (the 2018 checkpoints predate them).
:func:`convert_gan` combines a GAN, its DAMSM text encoder and ``captions.pickle`` into an exported model directory
(:func:`t2igan.models.registry.write_model_dir`); a StackGAN model conditioned on char-CNN-RNN embeddings is
converted without a text encoder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2igan.models.attngan import (
    ATTENTION_MASKS,
    AttnGANDiscriminator,
    AttnGANDiscriminatorConfig,
    AttnGANDiscriminators,
    AttnGANDiscriminatorsConfig,
    AttnGANGenerator,
    AttnGANGeneratorConfig,
)
from t2igan.models.base import ModelLoadError
from t2igan.models.damsm import (
    ImageEncoder,
    ImageEncoderConfig,
    TextEncoder,
    TextEncoderConfig,
    fill_missing_bn_counters,
)
from t2igan.models.dfgan import (
    DFGANDiscriminator,
    DFGANDiscriminatorConfig,
    DFGANGenerator,
    DFGANGeneratorConfig,
    dfgan_discriminator_channels,
    dfgan_generator_channels,
)
from t2igan.models.layers import IMAGE_SIZES
from t2igan.models.registry import FAMILIES, write_model_dir
from t2igan.models.ssagan import (
    SSAGANDiscriminator,
    SSAGANDiscriminatorConfig,
    SSAGANGenerator,
    SSAGANGeneratorConfig,
    ssagan_discriminator_channels,
    ssagan_generator_channels,
)
from t2igan.models.stackgan import (
    StackGANDiscriminatorConfig,
    StackGANStage1Config,
    StackGANStage1Discriminator,
    StackGANStage1Generator,
    StackGANStage2Config,
    StackGANStage2Discriminator,
    StackGANStage2Generator,
)
from t2igan.text.vocab import Vocabulary

__all__ = [
    "StateSource",
    "convert_damsm",
    "convert_gan",
    "import_attngan",
    "import_damsm_image_encoder",
    "import_damsm_text_encoder",
    "import_dfgan",
    "import_ssagan",
    "import_stackgan",
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
                                 f"(is this a state dict?){_family_hint(raw)}")
    return strip_module_prefix(raw), source


# key signatures of the official checkpoints, for errors that meet a file of another kind
_SIGNATURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("a DF-GAN state_epoch file", ("model",), "t2igan convert dfgan --state-epoch FILE"),
    ("a DF-GAN netG", ("GBlocks.", "to_rgb."), "t2igan convert dfgan --state-epoch FILE"),
    ("an SSA-GAN netG", ("conv_mask.", "block0."), "t2igan convert ssagan --netG FILE"),
    ("an AttnGAN netG", ("ca_net.", "h_net1."), "t2igan convert attngan --netG FILE"),
    ("a StackGAN stage-II netG", ("STAGE1_G.",), "t2igan convert stackgan --netG FILE"),
    ("a StackGAN stage-I netG", ("ca_net.", "upsample1."), "t2igan convert stackgan --netG FILE"),
    ("a DAMSM text encoder", ("rnn.", "encoder."), "t2igan convert damsm --text-encoder FILE"),
)


def _family_hint(state: Mapping[str, Any]) -> str:
    """' (it looks like X: use `t2igan convert ...`)' when the keys match an official kind, else ''."""
    keys = [k[len(_PREFIX):] if isinstance(k, str) and k.startswith(_PREFIX) else str(k) for k in state]
    for what, prefixes, command in _SIGNATURES:
        if all(any(k == p or k.startswith(p) for k in keys) for p in prefixes):
            return f"; it looks like {what}: use `{command}`"
    return ""


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
        raise ModelLoadError(f"{source}: missing tensor {key!r} (not an official {what}?){_family_hint(state)}; "
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


# ================================================================================================ SSA-GAN / DF-GAN


def _source_name(src: StateSource, role: str) -> str:
    """How a checkpoint is named in messages and in ``pipeline.json``: its path, or ``<role state dict>``."""
    return f"<{role} state dict>" if isinstance(src, Mapping) else str(Path(src))


def _load_gan_state(src: StateSource, role: str) -> tuple[dict[str, torch.Tensor], str]:
    """:func:`load_official_state`, with a mapping named after its role (``<netG state dict>``) in messages."""
    state, source = load_official_state(src)
    return state, _source_name(src, role) if isinstance(src, Mapping) else source


def _block_count(state: Mapping[str, torch.Tensor], prefix: str, source: str, *, may_be_none: bool = False) -> int:
    """How many ``{prefix}{k}.*`` blocks the state dict holds; they must be numbered 0..n-1."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    found = sorted({int(m.group(1)) for key in state if (m := pattern.match(key))})
    if not found and not may_be_none:
        raise ModelLoadError(f"{source}: has no '{prefix}{{k}}' blocks{_family_hint(state)}")
    if found != list(range(len(found))):
        raise ModelLoadError(f"{source}: the '{prefix}{{k}}' blocks are numbered {found}, expected 0..{len(found) - 1}")
    return len(found)


def _size_from_blocks(n_blocks: int, plan: Any, width: int, prefix: str, source: str, what: str) -> int:
    """The image size whose channel ``plan(width, size)`` has ``n_blocks`` blocks."""
    sizes = {len(plan(width, size)): size for size in IMAGE_SIZES}
    if n_blocks not in sizes:
        options = [f"{n} ({size} px)" for n, size in sorted(sizes.items())]
        known = ", ".join(options[:-1]) + f" or {options[-1]}"
        raise ModelLoadError(f"{source}: has {n_blocks} '{prefix}{{k}}' blocks; an official {what} has {known}")
    return sizes[n_blocks]


def _multiple_of(value: int, unit: int, key: str, tensor: torch.Tensor, source: str) -> int:
    if value < unit or value % unit:
        raise ModelLoadError(f"{source}: tensor {key!r} has shape {tuple(tensor.shape)}; its size {value} is not a "
                             f"positive multiple of {unit}")
    return value // unit


def _cond_from(tensor: torch.Tensor, key: str, other: int, other_name: str, source: str) -> int:
    """``cond_dim`` = the in-features of ``tensor`` minus the ``other`` inputs concatenated before it."""
    cond_dim = int(tensor.shape[1]) - other
    if cond_dim < 1:
        raise ModelLoadError(f"{source}: tensor {key!r} has shape {tuple(tensor.shape)}; its {tensor.shape[1]} "
                             f"inputs leave no room for a sentence embedding after {other_name} = {other}")
    return cond_dim


def _make_config(cls: Any, source: str, **values: Any) -> Any:
    try:
        return cls(**values)
    except ValueError as exc:
        raise ModelLoadError(f"{source}: the sizes read from the tensors give no valid {cls.__name__}: {exc}") from exc


def _check_pair(g_cfg: Any, d_cfg: Any, g_source: str, d_source: str) -> None:
    """The generator and discriminator of one model share the image size and the sentence-embedding size."""
    for field, what in (("image_size", "image size"), ("cond_dim", "sentence-embedding size (cond_dim)")):
        g_val, d_val = getattr(g_cfg, field), getattr(d_cfg, field)
        if g_val != d_val:
            raise ModelLoadError(f"the generator {g_source} has {what} {g_val} but the discriminator {d_source} has "
                                 f"{d_val}; they are not parts of the same model")


def _ssagan_generator_config(state: Mapping[str, torch.Tensor], source: str) -> SSAGANGeneratorConfig:
    what = "SSA-GAN netG"
    fc = _require(state, "fc.weight", 2, source, what)  # [8*ngf*4*4, nz]
    ngf = _multiple_of(int(fc.shape[0]), 8 * 4 * 4, "fc.weight", fc, source)
    size = _size_from_blocks(_block_count(state, "block", source), ssagan_generator_channels, ngf, "block",
                             source, what)
    lin = _require(state, "block0.affine0.fc_gamma.linear1.weight", 2, source, what)  # [cond_dim, cond_dim]
    mask = _require(state, "conv_mask.0.weight", 4, source, what)  # [mask_hidden, 8*ngf, 3, 3]
    return _make_config(SSAGANGeneratorConfig, source, ngf=ngf, nz=int(fc.shape[1]), cond_dim=int(lin.shape[1]),
                        image_size=size, mask_hidden=int(mask.shape[0]), formulation="official")


def _ssagan_discriminator_config(state: Mapping[str, torch.Tensor], source: str) -> SSAGANDiscriminatorConfig:
    what = "SSA-GAN netD"
    conv = _require(state, "conv_img.weight", 4, source, what)  # [ndf, 3, 3, 3]
    ndf = int(conv.shape[0])
    size = _size_from_blocks(_block_count(state, "block", source), ssagan_discriminator_channels, ndf, "block",
                             source, what)
    features = ssagan_discriminator_channels(ndf, size)[-1][1]  # 16 * ndf
    key = "COND_DNET.joint_conv.0.weight"  # [2*ndf, features + cond_dim, 3, 3]
    cond_dim = _cond_from(_require(state, key, 4, source, what), key, features, "the feature channels", source)
    return _make_config(SSAGANDiscriminatorConfig, source, ndf=ndf, cond_dim=cond_dim, image_size=size)


def import_ssagan(netG: StateSource,  # noqa: N803 -- the official name
                  netD: StateSource | None = None) -> tuple[SSAGANGenerator, SSAGANDiscriminator | None]:  # noqa: N803
    """Build SSA-GAN modules from official ``netG_*.pth`` (and ``netD_*.pth``) files or state dicts.

    The files are bare state dicts, with or without the ``module.`` prefix of SSA-GAN's ``DataParallel``
    wrappers. The sizes are read from the tensors: ``ngf`` and ``nz`` from ``fc.weight`` [8*ngf*16, nz], the image
    size from the number of ``block{k}`` (7: 256 px, 6: 128 px, 5: 64 px), ``cond_dim`` from
    ``block0.affine0.fc_gamma.linear1.weight``; for the discriminator ``ndf`` from ``conv_img.weight``, the image
    size from its ``block{j}`` count (6 / 5 / 4) and ``cond_dim`` from ``COND_DNET.joint_conv.0.weight``. Loading is
    exact (every tensor used, every parameter filled, shapes equal). Returns ``(generator, discriminator or
    None)`` in eval mode.
    """
    g_state, g_source = _load_gan_state(netG, "netG")
    g_config = _ssagan_generator_config(g_state, g_source)
    d_state: dict[str, torch.Tensor] | None = None
    d_config: SSAGANDiscriminatorConfig | None = None
    d_source = ""
    if netD is not None:
        d_state, d_source = _load_gan_state(netD, "netD")
        d_config = _ssagan_discriminator_config(d_state, d_source)
        _check_pair(g_config, d_config, g_source, d_source)
    generator = SSAGANGenerator(g_config)
    load_state_exact(generator, g_state, source=g_source)
    discriminator = None
    if d_state is not None and d_config is not None:
        discriminator = SSAGANDiscriminator(d_config)
        load_state_exact(discriminator, d_state, source=d_source)
        discriminator.eval()
    return generator.eval(), discriminator


def _read_checkpoint_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)``: a file with arbitrary Python objects is refused, not unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        if unsafe:
            raise ModelLoadError(
                f"{path}: holds non-tensor Python objects ({unsafe.group(1)}) and is refused for safety: only "
                "checkpoints of tensors, numbers, strings and plain containers are read (torch.load with "
                "weights_only=True). If you trust the file, load it yourself and pass the resulting dict") from exc
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", message, re.S)
        reason = (detail.group(1) if detail else message).strip().splitlines()[0][:200] if message else ""
        raise ModelLoadError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {reason})") from exc


def _tensor_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Check that ``obj`` is a state dict of tensors and strip ``module.`` (DDP) from its keys."""
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{source}: expected a state dict, got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{source}: entry {key!r} is a {type(value).__name__}, expected a tensor")
    return strip_module_prefix(obj)


def _dfgan_parts(raw: Any, source: str) -> dict[str, tuple[dict[str, torch.Tensor], str]]:
    """``{'netG': (state, source), 'netD': ..., 'netC': ...}`` of a state_epoch dict or a bare netG state dict."""
    if not isinstance(raw, Mapping):
        raise ModelLoadError(f"{source}: expected a DF-GAN state_epoch dict or a netG state dict, "
                             f"got {type(raw).__name__}")
    if "model" not in raw:
        if raw and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()):
            return {"netG": (strip_module_prefix(raw), source)}  # a bare netG state dict
        keys = _names(sorted(map(str, raw))) or "none"
        raise ModelLoadError(f"{source}: not a DF-GAN checkpoint: it has no 'model' entry holding netG/netD/netC "
                             f"and is not a netG state dict; its keys: {keys}")
    model = raw["model"]
    if not isinstance(model, Mapping) or "netG" not in model:
        has = (_names(sorted(map(str, model))) or "none") if isinstance(model, Mapping) else type(model).__name__
        raise ModelLoadError(f"{source}: its 'model' entry has no 'netG' (it has: {has})")
    parts = {}
    for name in ("netG", "netD", "netC"):
        if name in model:
            part_source = f"{source}['model']['{name}']"
            parts[name] = (_tensor_state(model[name], part_source), part_source)
    if ("netD" in parts) != ("netC" in parts):
        have, lack = ("netD", "netC") if "netD" in parts else ("netC", "netD")
        raise ModelLoadError(f"{source}: its 'model' entry has {have} but no {lack}; the discriminator needs both")
    return parts


def _dfgan_generator_config(state: Mapping[str, torch.Tensor], source: str) -> DFGANGeneratorConfig:
    what = "DF-GAN netG"
    fc = _require(state, "fc.weight", 2, source, what)  # [8*ngf*4*4, nz]
    ngf = _multiple_of(int(fc.shape[0]), 8 * 4 * 4, "fc.weight", fc, source)
    nz = int(fc.shape[1])
    size = _size_from_blocks(_block_count(state, "GBlocks.", source), dfgan_generator_channels, ngf, "GBlocks.",
                             source, what)
    key = "GBlocks.0.fuse1.affine0.fc_gamma.linear1.weight"  # [8*ngf, nz + cond_dim]
    cond_dim = _cond_from(_require(state, key, 2, source, what), key, nz, "nz", source)
    return _make_config(DFGANGeneratorConfig, source, ngf=ngf, nz=nz, cond_dim=cond_dim, image_size=size)


def _dfgan_discriminator_config(d_state: Mapping[str, torch.Tensor], d_source: str,
                                c_state: Mapping[str, torch.Tensor], c_source: str) -> DFGANDiscriminatorConfig:
    conv = _require(d_state, "conv_img.weight", 4, d_source, "DF-GAN netD")  # [ndf, 3, 3, 3]
    ndf = int(conv.shape[0])
    size = _size_from_blocks(_block_count(d_state, "DBlocks.", d_source), dfgan_discriminator_channels, ndf,
                             "DBlocks.", d_source, "DF-GAN netD")
    features = dfgan_discriminator_channels(ndf, size)[-1][1]  # 8 * ndf
    key = "joint_conv.0.weight"  # [2*ndf, features + cond_dim, 3, 3]
    cond_dim = _cond_from(_require(c_state, key, 4, c_source, "DF-GAN netC"), key, features,
                          "netD's feature channels", c_source)
    return _make_config(DFGANDiscriminatorConfig, d_source, ndf=ndf, cond_dim=cond_dim, image_size=size)


def import_dfgan(state_epoch: StateSource) -> tuple[DFGANGenerator, DFGANDiscriminator | None]:
    """Build DF-GAN (CVPR 2022) modules from an official ``state_epoch_*.pth`` (path or loaded dict).

    The file is ``{'model': {'netG', 'netD', 'netC'}, 'optimizers': ..., 'epoch': ...}`` (keys of the state dicts
    may carry ``module.`` from DDP); a bare ``netG`` state dict is accepted too (then no discriminator). The file
    is read with ``torch.load(weights_only=True)``: one holding other Python objects is refused. Sizes come from
    the tensors: ``ngf``/``nz`` from ``fc.weight``, the image size from the number of ``GBlocks`` (6: 256 px,
    5: 128, 4: 64), ``cond_dim`` from ``GBlocks.0.fuse1.affine0.fc_gamma.linear1.weight`` [8*ngf, nz + cond_dim];
    ``ndf`` and the size from netD's ``conv_img.weight`` and ``DBlocks`` count, its ``cond_dim`` from netC's
    ``joint_conv.0.weight``. Loading is exact. Returns ``(generator, discriminator or None)`` in eval mode.
    """
    if isinstance(state_epoch, Mapping):
        source = _source_name(state_epoch, "state_epoch")
        raw: Any = state_epoch
    else:
        source = str(Path(state_epoch))
        raw = _read_checkpoint_file(state_epoch)
    parts = _dfgan_parts(raw, source)
    g_state, g_source = parts["netG"]
    g_config = _dfgan_generator_config(g_state, g_source)
    d_config: DFGANDiscriminatorConfig | None = None
    if "netD" in parts:
        (d_state, d_source), (c_state, c_source) = parts["netD"], parts["netC"]
        d_config = _dfgan_discriminator_config(d_state, d_source, c_state, c_source)
        _check_pair(g_config, d_config, g_source, d_source)
    generator = DFGANGenerator(g_config)
    load_state_exact(generator, g_state, source=g_source)
    discriminator = None
    if d_config is not None:
        discriminator = DFGANDiscriminator(d_config)
        load_state_exact(discriminator.D, d_state, source=d_source)
        load_state_exact(discriminator.C, c_state, source=c_source)
        discriminator.eval()
    return generator.eval(), discriminator


# ================================================================================================ AttnGAN / StackGAN


def _positive_rest(tensor: torch.Tensor, key: str, other: int, other_name: str, rest_name: str,
                   source: str) -> int:
    """The in-features of ``tensor`` left after the ``other`` inputs concatenated with them (must be >= 1)."""
    rest = int(tensor.shape[1]) - other
    if rest < 1:
        raise ModelLoadError(f"{source}: tensor {key!r} has shape {tuple(tensor.shape)}; its {tensor.shape[1]} "
                             f"inputs leave no room for {rest_name} after {other_name} = {other}")
    return rest


_ATTNGAN_STAGE = re.compile(r"^h_net(\d+)\.")


def _attngan_generator_config(state: Mapping[str, torch.Tensor], source: str,
                              attention_mask: str) -> AttnGANGeneratorConfig:
    what = "AttnGAN netG"
    key = "ca_net.fc.weight"  # [4 * CONDITION_DIM, EMBEDDING_DIM]
    ca = _require(state, key, 2, source, what)
    embedding_dim = _multiple_of(int(ca.shape[0]), 4, key, ca, source)
    text_dim = int(ca.shape[1])
    key = "h_net1.fc.0.weight"  # [16*ngf * 4*4 * 2, CONDITION_DIM + Z_DIM]
    fc = _require(state, key, 2, source, what)
    gf_dim = _multiple_of(int(fc.shape[0]), 16 * 4 * 4 * 2, key, fc, source)
    z_dim = _positive_rest(fc, key, embedding_dim, "CONDITION_DIM (from 'ca_net.fc.weight')", "the noise", source)
    stages = sorted({int(m.group(1)) for k in state if (m := _ATTNGAN_STAGE.match(k))})
    if stages not in ([1], [1, 2], [1, 2, 3]):
        raise ModelLoadError(f"{source}: its 'h_net{{i}}' stages are numbered {stages}; an official AttnGAN "
                             "netG has h_net1 .. h_net{BRANCH_NUM} with BRANCH_NUM 1, 2 or 3")
    words_dim, r_num = text_dim, 0
    if len(stages) > 1:
        key = "h_net2.att.conv_context.weight"  # [ngf, EMBEDDING_DIM (words), 1, 1]
        words_dim = int(_require(state, key, 4, source, what).shape[1])
        r_num = _block_count(state, "h_net2.residual.", source, may_be_none=True)
    dcgan = any(k.startswith("img_net.") for k in state)  # G_DCGAN: one image head after the last stage
    return _make_config(AttnGANGeneratorConfig, source, gf_dim=gf_dim, z_dim=z_dim, embedding_dim=embedding_dim,
                        text_dim=text_dim, words_dim=words_dim, r_num=r_num, branch_num=len(stages), dcgan=dcgan,
                        attention_mask=attention_mask)


def _attngan_discriminator_config(state: Mapping[str, torch.Tensor], source: str) -> AttnGANDiscriminatorConfig:
    what = "AttnGAN netD"
    ndf = int(_require(state, "img_code_s16.0.weight", 4, source, what).shape[0])  # [DF_DIM, 3, 4, 4]
    if any(k.startswith("img_code_s64.") for k in state):
        size = 256  # D_NET256
    elif any(k.startswith("img_code_s32.") for k in state):
        size = 128  # D_NET128
    else:
        size = 64  # D_NET64
    key = "COND_DNET.jointConv.0.weight"  # [8*ndf, 8*ndf + EMBEDDING_DIM, 3, 3]
    text_dim = _cond_from(_require(state, key, 4, source, what), key, 8 * ndf, "the feature channels", source)
    b_jcu = any(k.startswith("UNCOND_DNET.") for k in state)
    return _make_config(AttnGANDiscriminatorConfig, source, image_size=size, df_dim=ndf, text_dim=text_dim,
                        b_jcu=b_jcu)


def _load_filled(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """:func:`load_state_exact` after setting absent BatchNorm ``num_batches_tracked`` counters to 0."""
    load_state_exact(module, fill_missing_bn_counters(module, dict(state)), source=source)


def _source_list(sources: Any, name: str, what: str) -> list[StateSource]:
    if isinstance(sources, str | os.PathLike | Mapping) or not isinstance(sources, Sequence):
        raise ValueError(f"{name} must be a list of {what}, got a {type(sources).__name__}")
    return list(sources)


def import_attngan(netG: StateSource,  # noqa: N803 -- the official name
                   netsD: Sequence[StateSource] | None = None, *,  # noqa: N803
                   attention_mask: str = "own",
                   ) -> tuple[AttnGANGenerator, AttnGANDiscriminators | AttnGANDiscriminator | None]:
    """Build AttnGAN modules from an official ``netG_epoch_*.pth`` / ``bird_AttnGAN2.pth`` (and ``netD{i}.pth``).

    ``netsD`` lists the discriminator files in stage order (``[netD0.pth, netD1.pth, netD2.pth]``: ``D_NET64``,
    ``D_NET128``, ``D_NET256``); they become the ``stages`` of one :class:`AttnGANDiscriminators`. For an
    AttnDCGAN generator (``G_DCGAN``) the official trainer has a single ``D_NET`` at the last size (``b_jcu``
    False): pass ``[netD0.pth]`` and get an :class:`AttnGANDiscriminator`. Files and mappings, with or without
    ``module.``, and 2018 files without ``num_batches_tracked`` load; every other key is required.

    Sizes come from the tensors: ``CONDITION_DIM`` and ``TEXT.EMBEDDING_DIM`` from ``ca_net.fc.weight`` [4*ncf,
    nef], ``GF_DIM`` and ``Z_DIM`` from ``h_net1.fc.0.weight`` [512*ngf, ncf + nz], ``BRANCH_NUM`` from the
    ``h_net{i}`` stages, the word width from ``h_net2.att.conv_context.weight``, ``R_NUM`` from the
    ``h_net2.residual.{k}`` blocks (0 for AttnDCGAN), ``B_DCGAN`` from a single ``img_net``; per discriminator
    ``DF_DIM`` from ``img_code_s16.0.weight``, its size from ``img_code_s32``/``img_code_s64``, the sentence width
    from ``COND_DNET.jointConv.0.weight`` and ``b_jcu`` from ``UNCOND_DNET``. ``attention_mask`` is the
    generator's masking (``"official"`` reproduces the official batch quirk; see
    :mod:`t2igan.models.attngan`). Returns ``(generator, discriminators or None)`` in eval mode.
    """
    if attention_mask not in ATTENTION_MASKS:
        raise ValueError(f"attention_mask must be one of {', '.join(ATTENTION_MASKS)}, got {attention_mask!r}")
    g_state, g_source = _load_gan_state(netG, "netG")
    g_config = _attngan_generator_config(g_state, g_source, attention_mask)
    parts: list[tuple[dict[str, torch.Tensor], str, AttnGANDiscriminatorConfig]] = []
    if netsD is not None:
        sources = _source_list(netsD, "netsD", "netD{i}.pth files (or state dicts) in stage order")
        expected = (g_config.image_size,) if g_config.dcgan else tuple(64 * 2 ** i for i in range(g_config.branch_num))
        if len(sources) != len(expected):
            kind = ("an AttnDCGAN netG (one D_NET at its last size)" if g_config.dcgan
                    else f"a netG with {g_config.branch_num} stages")
            raise ModelLoadError(f"{g_source} is {kind}: it needs {len(expected)} discriminator file(s) "
                                 f"({', '.join(f'{s} px' for s in expected)}), got {len(sources)}")
        for i, (src, size) in enumerate(zip(sources, expected)):
            state, source = _load_gan_state(src, f"netD{i}")
            cfg = _attngan_discriminator_config(state, source)
            if cfg.image_size != size:
                raise ModelLoadError(f"{source}: is a D_NET{cfg.image_size} ({cfg.image_size} px) but discriminator "
                                     f"{i} of {g_source} scores {size} px images; pass netD0.pth, netD1.pth, ... "
                                     "in stage order")
            if cfg.text_dim != g_config.text_dim:
                raise ModelLoadError(f"the generator {g_source} takes {g_config.text_dim}-d sentence embeddings but the "
                                     f"discriminator {source} conditions on {cfg.text_dim}-d ones; they are not "
                                     "parts of the same model")
            for field in ("df_dim", "b_jcu"):
                if parts and getattr(cfg, field) != getattr(parts[0][2], field):
                    raise ModelLoadError(f"{source}: has {field} {getattr(cfg, field)} but {parts[0][1]} has "
                                         f"{getattr(parts[0][2], field)}; the discriminators of one model share it")
            parts.append((state, source, cfg))
    generator = AttnGANGenerator(g_config)
    _load_filled(generator, g_state, g_source)
    discriminator: AttnGANDiscriminators | AttnGANDiscriminator | None = None
    if g_config.dcgan and parts:
        state, source, cfg = parts[0]
        discriminator = AttnGANDiscriminator(cfg)
        _load_filled(discriminator, state, source)
    elif parts:
        first = parts[0][2]
        discriminator = AttnGANDiscriminators(AttnGANDiscriminatorsConfig(
            image_size=g_config.image_size, df_dim=first.df_dim, text_dim=first.text_dim, b_jcu=first.b_jcu))
        for stage, (state, source, _) in zip(discriminator.stages, parts):
            _load_filled(stage, state, source)
    if discriminator is not None:
        discriminator.eval()
    return generator.eval(), discriminator


def _stackgan_stage1_config(state: Mapping[str, torch.Tensor], source: str, prefix: str = "") -> StackGANStage1Config:
    what = "StackGAN netG"
    key = f"{prefix}ca_net.fc.weight"  # [2 * CONDITION_DIM, TEXT.DIMENSION]
    ca = _require(state, key, 2, source, what)
    cond_dim = _multiple_of(int(ca.shape[0]), 2, key, ca, source)
    key = f"{prefix}fc.0.weight"  # [8*ngf * 4*4, Z_DIM + CONDITION_DIM]
    fc = _require(state, key, 2, source, what)
    ngf = _multiple_of(int(fc.shape[0]), 8 * 4 * 4, key, fc, source)
    nz = _positive_rest(fc, key, cond_dim, f"CONDITION_DIM (from '{prefix}ca_net.fc.weight')", "the noise", source)
    return _make_config(StackGANStage1Config, source, ngf=ngf, nz=nz, text_dim=int(ca.shape[1]), cond_dim=cond_dim)


def _stackgan_stage2_config(state: Mapping[str, torch.Tensor], source: str) -> StackGANStage2Config:
    stage1 = _stackgan_stage1_config(state, source, "STAGE1_G.")
    ca = _require(state, "ca_net.fc.weight", 2, source, "StackGAN stage-II netG")
    if tuple(ca.shape) != (2 * stage1.cond_dim, stage1.text_dim):
        raise ModelLoadError(f"{source}: tensor 'ca_net.fc.weight' has shape {tuple(ca.shape)} but "
                             f"'STAGE1_G.ca_net.fc.weight' has {(2 * stage1.cond_dim, stage1.text_dim)}; both stages "
                             "read one TEXT.DIMENSION and CONDITION_DIM")
    ngf = int(_require(state, "encoder.0.weight", 4, source, "StackGAN stage-II netG").shape[0])  # [ngf, 3, 3, 3]
    return _make_config(StackGANStage2Config, source, ngf=ngf, nz=stage1.nz, text_dim=stage1.text_dim,
                        cond_dim=stage1.cond_dim, r_num=_block_count(state, "residual.", source, may_be_none=True),
                        stage1_ngf=None if stage1.ngf == ngf else stage1.ngf)


def _stackgan_discriminator_config(state: Mapping[str, torch.Tensor],
                                   source: str) -> tuple[int, StackGANDiscriminatorConfig]:
    """``(stage, config)``: stage II when the file has ``get_uncond_logits`` or the deeper ``encode_img``."""
    what = "StackGAN netD"
    ndf = int(_require(state, "encode_img.0.weight", 4, source, what).shape[0])  # [DF_DIM, 3, 4, 4]
    key = "get_cond_logits.outlogits.0.weight"  # [8*ndf, 8*ndf + CONDITION_DIM, 3, 3]
    cond_dim = _cond_from(_require(state, key, 4, source, what), key, 8 * ndf, "the feature channels", source)
    stage = 2 if any(k.startswith(("get_uncond_logits.", "encode_img.11.")) for k in state) else 1
    return stage, _make_config(StackGANDiscriminatorConfig, source, ndf=ndf, cond_dim=cond_dim)


def import_stackgan(netG: StateSource,  # noqa: N803 -- the official name
                    netD: StateSource | None = None,  # noqa: N803
                    ) -> tuple[StackGANStage1Generator | StackGANStage2Generator,
                               StackGANStage1Discriminator | StackGANStage2Discriminator | None]:
    """Build StackGAN-Pytorch modules from official ``netG_epoch_*.pth`` (and ``netD_epoch_*.pth``) files.

    The stage comes from the keys: a netG holding ``STAGE1_G.*`` is ``STAGE2_G`` and gives a
    :class:`StackGANStage2Generator` (the embedded stage-I weights included), any other a
    :class:`StackGANStage1Generator`; a netD with ``get_uncond_logits`` (and the deeper ``encode_img``) is
    ``STAGE2_D``, else ``STAGE1_D``, and must be of the generator's stage. Sizes come from the tensors:
    ``CONDITION_DIM`` and ``TEXT.DIMENSION`` from ``ca_net.fc.weight`` [2*cond, text], ``GF_DIM`` and ``Z_DIM``
    from (``STAGE1_G.``)``fc.0.weight`` [128*ngf, nz + cond]; stage II's ``GF_DIM`` from ``encoder.0.weight`` and
    ``R_NUM`` from the ``residual.{k}`` blocks; ``DF_DIM`` from ``encode_img.0.weight`` and the discriminator's
    ``CONDITION_DIM`` (it scores images against the generator's CA mean) from
    ``get_cond_logits.outlogits.0.weight``. Files and mappings, with or without ``module.``, and files without
    ``num_batches_tracked`` load; every other key is required. Returns ``(generator, discriminator or None)``
    in eval mode.
    """
    g_state, g_source = _load_gan_state(netG, "netG")
    g_stage = 2 if any(k.startswith("STAGE1_G.") for k in g_state) else 1
    g_config: StackGANStage1Config | StackGANStage2Config = (
        _stackgan_stage2_config(g_state, g_source) if g_stage == 2 else _stackgan_stage1_config(g_state, g_source))
    d_state: dict[str, torch.Tensor] | None = None
    d_config: StackGANDiscriminatorConfig | None = None
    d_source = ""
    if netD is not None:
        d_state, d_source = _load_gan_state(netD, "netD")
        d_stage, d_config = _stackgan_discriminator_config(d_state, d_source)
        if d_stage != g_stage:
            names = {1: "stage-I (64 px)", 2: "stage-II (256 px)"}
            raise ModelLoadError(f"the generator {g_source} is {names[g_stage]} but the discriminator {d_source} is "
                                 f"{names[d_stage]}; they are not parts of the same model")
        if d_config.cond_dim != g_config.cond_dim:
            raise ModelLoadError(f"the generator {g_source} has CONDITION_DIM {g_config.cond_dim} but the "
                                 f"discriminator {d_source} conditions on {d_config.cond_dim}-d codes; they are not "
                                 "parts of the same model")
    generator: StackGANStage1Generator | StackGANStage2Generator
    if isinstance(g_config, StackGANStage2Config):
        generator = StackGANStage2Generator(g_config)
    else:
        generator = StackGANStage1Generator(g_config)
    _load_filled(generator, g_state, g_source)
    discriminator: StackGANStage1Discriminator | StackGANStage2Discriminator | None = None
    if d_state is not None and d_config is not None:
        discriminator = (StackGANStage2Discriminator if g_stage == 2 else StackGANStage1Discriminator)(d_config)
        _load_filled(discriminator, d_state, d_source)
        discriminator.eval()
    return generator.eval(), discriminator


_GAN_IMPORTERS = ("ssagan", "dfgan", "attngan", "stackgan")


def _check_gan_sources(family: str, netG: Any, netD: Any, state_epoch: Any) -> None:  # noqa: N803
    """Which checkpoint arguments each family takes (a ValueError naming the right ones)."""
    if family == "dfgan":
        if state_epoch is None:
            raise ValueError("family 'dfgan' needs state_epoch (an official DF-GAN state_epoch_*.pth, or a netG "
                             "state dict)")
        if netG is not None or netD is not None:
            raise ValueError("a DF-GAN model is given as state_epoch (a state_epoch_*.pth holds netG, netD and "
                             "netC; a bare netG state dict is accepted too), not as netG/netD")
        return
    names = {"ssagan": "an official SSA-GAN netG_*.pth", "attngan": "an official AttnGAN netG_epoch_*.pth or "
             "bird_AttnGAN2.pth / coco_AttnGAN2.pth", "stackgan": "an official StackGAN-Pytorch netG_epoch_*.pth"}
    if netG is None:
        raise ValueError(f"family {family!r} needs netG ({names[family]})")
    if state_epoch is not None:
        raise ValueError(f"state_epoch is a DF-GAN checkpoint; an {family} model is given as netG (and netD)")
    if family == "attngan" and netD is not None:
        _source_list(netD, "netD of an AttnGAN model", "the netD0.pth, netD1.pth, netD2.pth files in stage order")
    elif netD is not None and not isinstance(netD, str | os.PathLike | Mapping):
        raise ValueError(f"netD of a {family} model is one file or state dict, got a {type(netD).__name__}")


def convert_gan(family: str, *, netG: StateSource | None = None,  # noqa: N803 -- the official names
                netD: StateSource | Sequence[StateSource] | None = None,  # noqa: N803
                state_epoch: StateSource | None = None, text_encoder: StateSource | None = None,
                captions: str | os.PathLike[str] | None = None, out_dir: str | os.PathLike[str],
                words_num: int = 18) -> Path:
    """Convert an official SSA-GAN, DF-GAN, AttnGAN or StackGAN model into an exported model directory.

    ``family`` ``"ssagan"`` takes ``netG`` (and optionally ``netD``), ``"dfgan"`` takes ``state_epoch`` (a
    ``state_epoch_*.pth`` or a bare netG state dict), ``"attngan"`` ``netG`` and optionally ``netD`` as the list
    ``[netD0.pth, netD1.pth, netD2.pth]`` (:func:`import_attngan`), ``"stackgan"`` ``netG`` of stage I or II and
    optionally the ``netD`` of the same stage (:func:`import_stackgan`). ``text_encoder`` is the DAMSM
    ``text_encoder*.pth`` the GAN was trained with and ``captions`` its ``captions.pickle`` /
    ``captions_DAMSM.pickle`` (the vocabulary maps prompts to word ids; its size must equal the encoder's
    embedding rows); the generator's sentence-embedding size must equal the encoder's. StackGAN conditions on
    1024-d char-CNN-RNN embeddings, which no DAMSM encoder gives: without ``text_encoder`` (and ``captions``) the
    directory holds no text encoder and no vocabulary and ``pipeline.json`` records ``"condition":
    "char-cnn-rnn"`` (``"damsm"`` for a model converted with its DAMSM encoder); such a model cannot take text
    prompts. Everything is imported and checked before anything is written; then
    :func:`~t2igan.models.registry.write_model_dir` writes ``generator/``, ``discriminator/`` (when there is one),
    ``text_encoder/``, ``vocab.json`` and ``pipeline.json`` (with ``words_num`` and the ``source`` files).
    Returns ``out_dir``.
    """
    FAMILIES.get(family)  # an unknown family: RegistryError listing the choices
    if family not in _GAN_IMPORTERS:
        raise ValueError(f"no importer of official checkpoints for family {family!r}; supported: "
                         f"{', '.join(_GAN_IMPORTERS)}")
    if isinstance(words_num, bool) or not isinstance(words_num, int) or words_num < 1:
        raise ValueError(f"words_num must be a positive int, got {words_num!r}")
    _check_gan_sources(family, netG, netD, state_epoch)
    if text_encoder is None:
        if family != "stackgan":
            raise ValueError(f"family {family!r} needs text_encoder (the DAMSM text_encoder*.pth the GAN was "
                             "trained with)")
        if captions is not None:
            raise ValueError("captions were given without a text encoder: the vocabulary belongs to a DAMSM text "
                             "encoder; pass both, or neither for a StackGAN model conditioned on char-CNN-RNN "
                             "embeddings")
    elif captions is None:
        raise ValueError("a vocabulary is required to map prompts to word ids: pass captions= (the "
                         "captions.pickle / captions_DAMSM.pickle the text encoder was trained with)")

    source: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    generator: Any
    discriminator: Any
    if family == "dfgan":
        assert state_epoch is not None
        generator, discriminator = import_dfgan(state_epoch)
        source["state_epoch"] = _source_name(state_epoch, "state_epoch")
    else:
        assert netG is not None
        if family == "ssagan":
            generator, discriminator = import_ssagan(netG, netD)  # type: ignore[arg-type]
        elif family == "attngan":
            generator, discriminator = import_attngan(netG, netD)  # type: ignore[arg-type]
        else:
            generator, discriminator = import_stackgan(netG, netD)  # type: ignore[arg-type]
            meta["stage"] = 2 if isinstance(generator, StackGANStage2Generator) else 1
        source["netG"] = _source_name(netG, "netG")
        if family == "attngan" and netD is not None:
            source["netD"] = [_source_name(d, f"netD{i}") for i, d in enumerate(netD)]  # type: ignore[arg-type]
        elif netD is not None:
            source["netD"] = _source_name(netD, "netD")  # type: ignore[arg-type]
    g_name = source.get("netG") or source["state_epoch"]
    vocab = text = None
    if text_encoder is not None:
        assert captions is not None
        vocab = Vocabulary.from_captions_pickle(captions)
        text = import_damsm_text_encoder(text_encoder, vocab=vocab)
        source["text_encoder"] = _source_name(text_encoder, "text_encoder")
        source["captions"] = str(Path(captions))
        hidden = text.config.hidden
        if family in ("ssagan", "dfgan"):
            if generator.config.cond_dim != hidden:
                raise ValueError(
                    f"the generator ({g_name}) conditions on {generator.config.cond_dim}-d sentence embeddings but "
                    f"the text encoder {source['text_encoder']} produces {hidden}-d ones; use the text encoder the "
                    "GAN was trained with")
        elif family == "attngan":
            c = generator.config
            if c.text_dim != hidden or c.words_dim != hidden:
                raise ValueError(
                    f"the generator ({g_name}) conditions on {c.text_dim}-d sentence embeddings and attends to "
                    f"{c.words_dim}-d word embeddings (TEXT.EMBEDDING_DIM) but the text encoder "
                    f"{source['text_encoder']} produces {hidden}-d ones; use the text encoder the GAN was trained "
                    "with")
            meta["condition"] = "damsm"
        else:
            if generator.config.text_dim != hidden:
                raise ValueError(
                    f"the generator ({g_name}) conditions on {generator.config.text_dim}-d text embeddings "
                    f"(TEXT.DIMENSION; 1024 for the char-CNN-RNN embeddings of the released models) but the text "
                    f"encoder {source['text_encoder']} produces {hidden}-d ones; use the text encoder the GAN was "
                    "trained with, or leave the text encoder out for a model conditioned on char-CNN-RNN embeddings")
            meta["condition"] = "damsm"
    else:
        meta["condition"] = "char-cnn-rnn"  # no prompts, so no words_num either

    components: dict[str, Any] = {"generator": generator}
    if discriminator is not None:
        components["discriminator"] = discriminator
    if text is not None:
        components["text_encoder"] = text
    prompts = {"words_num": words_num} if text is not None else {}
    return write_model_dir(out_dir, family, components, vocab, **prompts, source=source, **meta)
