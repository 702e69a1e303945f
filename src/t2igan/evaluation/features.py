"""Feature extractors for FID, KID and IS; sharded feature extraction; cached reference statistics.

Why this module exists: every distribution metric is ``features -> statistics -> value``. The first step is
the slow one (Inception costs about 0.2 s per image on a CPU) and the one where protocols silently differ, so
it lives in one place with one input convention and one record of what was used.

**Input convention.** An extractor takes float images in ``[-1, 1]`` of shape ``[B, 3, H, W]`` (what our
generators output and what the data pipeline yields) and returns a dict with ``"pool"`` ``[B, D]`` (the
features FID and KID use) and, where the network has a classifier, ``"logits"`` ``[B, K]`` (what IS uses).
It also carries ``name`` (its registry key), ``weights_hash`` (sha256 of its weights file, or
``"random-seed-<n>"`` for random weights) and ``feature_dim``; every metric result reports the two strings.

**Extractors** (the :data:`EXTRACTORS` registry; builders take keyword arguments, and other modules may
register more, e.g. an attribute classifier):

- ``inception-fid``: the TensorFlow FID Inception (``pt_inception-2015-12-05``), as implemented by
  torch-fidelity's ``FeatureExtractorInceptionV3``. Images are quantised to uint8 the way they are saved
  (``round((x + 1) * 127.5)``) and resized to 299 with TF1's bilinear resize (no antialiasing), as the TF FID
  code did. ``pool`` is pool3 (2048), ``logits`` are the 1008 logits *without* the fc bias, which is what the
  original TF Inception Score code and torch-fidelity's IS use.
- ``inception-torchvision``: torchvision's ImageNet Inception-v3 (``IMAGENET1K_V1``), the network DF-GAN-style
  evaluations use. ImageNet normalisation, bilinear resize to 299 (no antialiasing); ``pool`` is the 2048-d
  average pool, ``logits`` the 1000 ImageNet logits. Its numbers are not comparable with ``inception-fid``'s;
  results say which one was used.
- ``random-tiny``: a small seeded random CNN (64-d pool, 10 logits) for tests and smoke runs.

Weights are read from an explicit path or from torch hub's cache (``torch.hub.get_dir()/checkpoints``, i.e.
``$TORCH_HOME/hub/checkpoints``); nothing is ever downloaded, and a missing file is a
:class:`FileNotFoundError` that lists every path looked at.

**Extraction** (:func:`extract_features`) is sharded by global index across ranks (``utils.dist.shard``) and
gathered in global-index order on every rank, so features do not depend on the batch size or on the number of
processes. **Reference statistics** (:func:`reference_stats`) are cached per dataset fingerprint and extractor
in one ``.npz`` written atomically, with the protocol recorded inside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from t2igan.registry import Registry
from t2igan.utils import dist
from t2igan.utils.io import atomic_write

__all__ = [
    "EXTRACTORS",
    "FeatureExtractor",
    "RandomTinyExtractor",
    "FIDInceptionExtractor",
    "TorchvisionInceptionExtractor",
    "FID_INCEPTION_WEIGHTS_FILES",
    "TORCHVISION_INCEPTION_WEIGHTS_FILES",
    "build_extractor",
    "extractor_protocol",
    "file_sha256",
    "find_weights",
    "images_to_uint8",
    "extract_features",
    "reference_stats",
    "reference_cache_path",
]

logger = logging.getLogger(__name__)

EXTRACTORS: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")
"""Name -> builder(**kwargs) returning a :class:`FeatureExtractor` (or any module with the same attributes)."""

# File names under torch hub's checkpoints dir: torch-fidelity's download name first, then pytorch-fid's (the same
# TF-ported weights; torchmetrics uses torch-fidelity's).
FID_INCEPTION_WEIGHTS_FILES: tuple[str, ...] = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
# torchvision's Inception_V3_Weights.IMAGENET1K_V1 file (current name, then the name older releases used)
TORCHVISION_INCEPTION_WEIGHTS_FILES: tuple[str, ...] = (
    "inception_v3_google-0cc3c7bd.pth",
    "inception_v3_google-1a9a5a14.pth",
)

_FINGERPRINT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,199}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

GetBatch = Callable[[list[int]], torch.Tensor]


# ================================================================================================ extractors


class FeatureExtractor(nn.Module):
    """Base of the extractors: ``forward(images [B, 3, H, W] in [-1, 1]) -> {"pool": [B, D], "logits": [B, K]}``.

    Subclasses set ``name``, ``weights_hash``, ``feature_dim`` and ``logits_dim`` (``None`` when the network
    has no classifier, in which case ``forward`` returns no ``"logits"``).
    """

    name: str
    weights_hash: str
    feature_dim: int
    logits_dim: int | None

    def __init__(self, name: str, weights_hash: str, feature_dim: int, logits_dim: int | None) -> None:
        super().__init__()
        self.name = name
        self.weights_hash = weights_hash
        self.feature_dim = feature_dim
        self.logits_dim = logits_dim

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights_hash={self.weights_hash!r}, feature_dim={self.feature_dim}"


def _check_images(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: expected images of shape [B, 3, H, W], got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{who}: expected float images in [-1, 1], got dtype {x.dtype} "
                         "(convert uint8 images with x / 127.5 - 1)")


def images_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` float images -> uint8 ``[0, 255]``, rounded as when they are saved (``utils.image``)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class RandomTinyExtractor(FeatureExtractor):
    """Three seeded random conv layers + global average pool (``pool``, 64-d) + a linear layer (``logits``, 10).

    Deterministic for a given seed and torch version; cheap enough for tests on a CPU.
    """

    def __init__(self, seed: int = 0, feature_dim: int = 64, num_classes: int = 10) -> None:
        super().__init__("random-tiny", f"random-seed-{seed}", feature_dim, num_classes)
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.Conv2d(32, feature_dim, 3, stride=1, padding=1),
        ])
        self.fc = nn.Linear(feature_dim, num_classes)
        with torch.no_grad():
            for layer in [*self.convs, self.fc]:
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.1)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images, self.name)
        x = images.float()
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        pool = x.mean(dim=(2, 3))  # [B, D]
        return {"pool": pool, "logits": self.fc(pool)}


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_weights(path: str | os.PathLike[str] | None, file_names: Sequence[str], what: str) -> Path:
    """``path`` if given, else the first of ``file_names`` found in ``torch.hub.get_dir()/checkpoints``.

    Never downloads. A missing file raises :class:`FileNotFoundError` naming every path looked at.
    """
    if path is not None:
        candidates = [Path(path).expanduser()]
    else:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        candidates = [hub / n for n in file_names]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    hint = "" if path is not None else " (torch hub's cache: $TORCH_HOME/hub/checkpoints)"
    raise FileNotFoundError(
        f"{what} weights not found; looked at: {looked}{hint}. Place the file there or pass its path "
        "(`t2igan evaluate --extractor-weights FILE`, or weights_path=... in Python); t2igan never downloads "
        "weights.")


def _hash_weights(path: Path, standard_files: Sequence[str], what: str) -> str:
    """sha256 of ``path``; a warning when it is not one of the standard files (torch hub names carry a prefix)."""
    digest = file_sha256(path)
    prefixes = list(dict.fromkeys(m.group(1) for f in standard_files if (m := re.search(r"-([0-9a-f]{8,})\.", f))))
    if prefixes and not any(digest.startswith(p) for p in prefixes):
        logger.warning("%s: sha256 %s... is not that of the standard %s weights (%s...); values computed with it "
                       "are not comparable with published ones", path, digest[:12], what, "/".join(prefixes))
    return digest


def _load_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable {what} weights file (a plain torch state dict is expected): "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in raw.items()):
        raise ValueError(f"{path}: expected a state dict of named tensors for {what}, got {type(raw).__name__}")
    return {k.removeprefix("module."): v for k, v in raw.items()}


class FIDInceptionExtractor(FeatureExtractor):
    """The TensorFlow FID Inception through torch-fidelity (weights ``pt_inception-2015-12-05-6726825d.pth``)."""

    def __init__(self, weights_path: str | os.PathLike[str] | None = None) -> None:
        found = find_weights(weights_path, FID_INCEPTION_WEIGHTS_FILES, "FID Inception (pt_inception-2015-12-05)")
        # torch-fidelity reads the file with torch.load(weights_only=False); read it with weights_only=True first,
        # so a file that would run code when unpickled is refused before the library ever sees it.
        state = _load_state_dict(found, "FID Inception")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as exc:  # pragma: no cover - torch-fidelity is a dependency
            raise ImportError("the 'inception-fid' extractor needs torch-fidelity (pip install torch-fidelity)") \
                from exc
        del state
        super().__init__("inception-fid", _hash_weights(found, FID_INCEPTION_WEIGHTS_FILES, "FID Inception"), 2048,
                         1008)
        self.weights_path = str(found)
        try:
            # always a path, so torch-fidelity's URL fallback (weights_path=None) can never run
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                   feature_extractor_weights_path=str(found))
        except RuntimeError as exc:  # load_state_dict: missing/unexpected keys, wrong shapes
            raise ValueError(f"{found}: not the FID Inception weights torch-fidelity expects: {exc}") from exc
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images, self.name)
        pool, logits = self.net(images_to_uint8(images))
        return {"pool": pool, "logits": logits}


class TorchvisionInceptionExtractor(FeatureExtractor):
    """torchvision's ImageNet Inception-v3 (``Inception_V3_Weights.IMAGENET1K_V1``), as DF-GAN-style code uses."""

    def __init__(self, weights_path: str | os.PathLike[str] | None = None) -> None:
        found = find_weights(weights_path, TORCHVISION_INCEPTION_WEIGHTS_FILES,
                             "torchvision Inception-v3 ImageNet (IMAGENET1K_V1)")
        state = _load_state_dict(found, "torchvision Inception-v3")
        from torchvision.models import inception_v3

        # transform_input=True is what torchvision sets for these weights (they were ported from TF)
        net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{found}: not torchvision Inception-v3 ImageNet weights: {exc}") from exc
        net.AuxLogits = None
        net.aux_logits = False
        super().__init__("inception-torchvision",
                         _hash_weights(found, TORCHVISION_INCEPTION_WEIGHTS_FILES, "torchvision Inception-v3"),
                         2048, 1000)
        self.weights_path = str(found)
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images, self.name)
        x = (images.float().clamp(-1, 1) + 1) / 2
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=False)
        x = (x - self.mean) / self.std
        n = self.net
        x = n._transform_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            x = getattr(n, name)(x)
        pool = torch.flatten(x, 1)  # [B, 2048]
        return {"pool": pool, "logits": n.fc(pool)}


@EXTRACTORS.register("random-tiny")
def build_random_tiny(seed: int = 0, feature_dim: int = 64, num_classes: int = 10) -> RandomTinyExtractor:
    """A seeded random CNN for tests and smoke runs (hash ``random-seed-<seed>``)."""
    return RandomTinyExtractor(seed=seed, feature_dim=feature_dim, num_classes=num_classes)


@EXTRACTORS.register("inception-fid")
def build_inception_fid(weights_path: str | os.PathLike[str] | None = None) -> FIDInceptionExtractor:
    """The standard (TF-ported) FID Inception; weights from ``weights_path`` or torch hub's cache."""
    return FIDInceptionExtractor(weights_path)


@EXTRACTORS.register("inception-torchvision")
def build_inception_torchvision(weights_path: str | os.PathLike[str] | None = None
                                ) -> TorchvisionInceptionExtractor:
    """torchvision's ImageNet Inception-v3; weights from ``weights_path`` or torch hub's cache."""
    return TorchvisionInceptionExtractor(weights_path)


def build_extractor(name: str, **kwargs: Any) -> nn.Module:
    """``EXTRACTORS.get(name)(**kwargs)``, checked for the attributes metrics need, in eval mode."""
    ext = EXTRACTORS.get(name)(**kwargs)
    missing = [a for a in ("name", "weights_hash", "feature_dim") if not hasattr(ext, a)]
    if missing or not isinstance(ext, nn.Module):
        raise TypeError(f"feature extractor {name!r} built {type(ext).__name__}, which is not an nn.Module with "
                        f"name, weights_hash and feature_dim (missing: {missing})")
    return ext.eval()


def extractor_protocol(extractor: nn.Module) -> dict[str, str]:
    """``{"extractor": name, "weights_hash": hash}``: what every metric result records about the network."""
    return {"extractor": str(extractor.name), "weights_hash": str(extractor.weights_hash)}


# ================================================================================================ extraction


def _as_get_batch(source: GetBatch | torch.Tensor) -> GetBatch:
    if isinstance(source, torch.Tensor):
        images = source
        return lambda idx: images[torch.as_tensor(idx, dtype=torch.long)]
    if not callable(source):
        raise TypeError(f"expected get_batch(indices) -> images or a tensor of images, got {type(source).__name__}")
    return source


def _progress(total: int, desc: str) -> Any:
    if dist.is_main() and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="img", leave=False)
    return None


@torch.no_grad()
def extract_features(extractor: nn.Module, get_batch: GetBatch | torch.Tensor, n: int, batch_size: int = 50,
                     device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Features of images ``0..n-1``, in that order, on every rank (CPU tensors).

    ``get_batch(indices: list[int])`` returns those images, ``[len(indices), 3, H, W]`` floats in ``[-1, 1]``
    (a tensor of all images is accepted too). Rank ``r`` of ``w`` handles indices ``r, r + w, ...`` in batches
    of ``batch_size``; the shards are gathered and put back in global-index order, so the result does not
    depend on the batch size or on the number of processes. Returns the extractor's dict (``"pool"``, and
    ``"logits"`` where it has them).
    """
    if n < 1:
        raise ValueError(f"need at least one image to extract features from, got n={n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    get = _as_get_batch(get_batch)
    device = torch.device(device)
    extractor.eval()
    mine = list(dist.shard(n))
    outs: dict[str, list[torch.Tensor]] = {}
    bar = _progress(n, f"features ({getattr(extractor, 'name', '?')})")
    step = dist.world_size()
    for s in range(0, len(mine), batch_size):
        idx = mine[s:s + batch_size]
        images = get(idx)
        _check_images(images, f"get_batch(indices {idx[0]}..{idx[-1]})")
        if images.shape[0] != len(idx):
            raise ValueError(f"get_batch returned {images.shape[0]} images for {len(idx)} indices "
                             f"({idx[0]}..{idx[-1]})")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.001 or hi > 1.001:
            raise ValueError(f"get_batch(indices {idx[0]}..{idx[-1]}) returned values in [{lo:.3g}, {hi:.3g}]; "
                             "images must be floats in [-1, 1]")
        feats = extractor(images.to(device))
        for k, v in feats.items():
            outs.setdefault(k, []).append(v.detach().float())
        if bar is not None:
            bar.update(len(idx) * step)
    if bar is not None:
        bar.close()
    # a rank with an empty shard (n < world size) learns the keys and shapes from rank 0, which always has work
    layout = dist.broadcast_object({k: (tuple(v[0].shape[1:]), v[0].dtype) for k, v in outs.items()})
    local = {k: torch.cat(outs[k]) if k in outs else torch.zeros((0, *shape), dtype=dtype, device=device)
             for k, (shape, dtype) in layout.items()}
    indices = torch.tensor(mine, dtype=torch.long, device=device)
    order = torch.argsort(dist.all_gather_uneven(indices))
    result = {k: dist.all_gather_uneven(v.to(device))[order].cpu() for k, v in local.items()}
    logger.debug("extracted %s features of %d images with %s", list(result), n, getattr(extractor, "name", "?"))
    return result


# ================================================================================================ reference stats


def _check_fingerprint(fingerprint: str) -> None:
    if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.fullmatch(fingerprint):
        raise ValueError(f"dataset fingerprint {fingerprint!r} is not filename-safe: use 1-200 characters of "
                         "letters, digits, '.', '_' and '-', starting with a letter or digit")


def reference_cache_path(cache_dir: str | os.PathLike[str], dataset_fingerprint: str, extractor: nn.Module
                         ) -> Path:
    """``<cache_dir>/<fingerprint>-<extractor name>-<hash[:12]>.npz`` (random-weight tags are kept whole)."""
    _check_fingerprint(dataset_fingerprint)
    h = str(extractor.weights_hash)
    tag = h[:12] if _SHA256_RE.fullmatch(h) else re.sub(r"[^A-Za-z0-9._\-]", "_", h)
    name = re.sub(r"[^A-Za-z0-9._\-]", "_", str(extractor.name))
    return Path(cache_dir) / f"{dataset_fingerprint}-{name}-{tag}.npz"


def _load_cached(path: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            protocol = json.loads(str(z["protocol"]))
            data = {"mu": z["mu"], "sigma": z["sigma"], "features": z["features"]}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        logger.warning("reference statistics %s are unreadable (%s: %s); recomputing", path, type(exc).__name__,
                       exc)
        return None
    differ = {k: (protocol.get(k), v) for k, v in expect.items() if protocol.get(k) != v}
    if differ:
        logger.warning("reference statistics %s were made with a different protocol (%s); recomputing", path,
                       ", ".join(f"{k}: cached {a!r}, wanted {b!r}" for k, (a, b) in differ.items()))
        return None
    return {**data, **protocol, "path": str(path)}


def reference_stats(extractor: nn.Module, dataset_fingerprint: str, get_batch: GetBatch | torch.Tensor, n: int,
                    cache_dir: str | os.PathLike[str], batch_size: int = 50, device: str | torch.device = "cpu",
                    max_kid_features: int | None = 10000, seed: int = 0) -> dict[str, Any]:
    """Statistics of ``n`` real images for FID and KID, cached per dataset fingerprint and extractor.

    Returns ``{"mu": [D] float64, "sigma": [D, D] float64 (ddof=1), "features": [M, D] float32, "num_images": n,
    "num_features": M, "extractor", "weights_hash", "fingerprint", "path"}``. ``features`` are the pool features
    KID draws its subsets from: all of them, or a seeded random subset of ``max_kid_features`` (kept in index
    order) when there are more. The cache file (see :func:`reference_cache_path`) is read when its recorded
    protocol (n, extractor, hash, fingerprint, max_kid_features, seed) matches, else (re)computed and written
    atomically by rank 0. Collective: every rank must call it; every rank gets the same dict.
    """
    from t2igan.evaluation.fid import feature_stats

    path = reference_cache_path(cache_dir, dataset_fingerprint, extractor)
    expect = {"num_images": int(n), "extractor": str(extractor.name), "weights_hash": str(extractor.weights_hash),
              "fingerprint": dataset_fingerprint, "max_kid_features": max_kid_features, "seed": int(seed)}
    cached = _load_cached(path, expect) if dist.is_main() and path.is_file() else None
    hit = dist.broadcast_object(cached is not None)
    if hit:
        logger.info("reference statistics read from %s", path)
        return dist.broadcast_object(cached)
    feats = extract_features(extractor, get_batch, n, batch_size=batch_size, device=device)["pool"]
    mu, sigma = feature_stats(feats)
    keep = np.arange(n)
    if max_kid_features is not None and n > max_kid_features:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_kid_features, replace=False))
    kid_feats = feats.numpy().astype(np.float32)[keep]
    protocol = {**expect, "num_features": len(keep)}
    if dist.is_main():
        with atomic_write(path, "wb") as f:
            np.savez(f, mu=mu, sigma=sigma, features=kid_feats, protocol=np.array(json.dumps(protocol)))
        logger.info("reference statistics of %d images (%s) written to %s", n, extractor.name, path)
    dist.barrier()
    return {"mu": mu, "sigma": sigma, "features": kid_feats, **protocol, "path": str(path)}
