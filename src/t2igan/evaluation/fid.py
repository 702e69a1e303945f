"""Fréchet Inception Distance (Heusel et al., 2017), with the arithmetic of pytorch-fid.

``FID = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½)`` between Gaussians fitted to two feature sets. Statistics
are float64, the covariance uses ddof=1 (``np.cov(rowvar=False)``), and the matrix square root is scipy's
``sqrtm`` with pytorch-fid's handling of an (almost) singular product (retry with ``eps`` on the diagonals)
and of a spurious imaginary part (dropped when the diagonal's is below 1e-3, an error otherwise), so values
agree with pytorch-fid's ``calculate_frechet_distance`` given the same statistics.

The generated features come from :func:`t2igan.evaluation.features.extract_features`, the reference statistics
from :func:`t2igan.evaluation.features.reference_stats`; the result records both sides' protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from t2igan.evaluation.base import METRICS

__all__ = ["FIDResult", "fid", "feature_stats", "frechet_distance"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FIDResult:
    value: float
    num_images: int
    num_reference: int
    extractor: str
    weights_hash: str
    reference: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {"fid": self.value, **{f"fid_{k}": v for k, v in asdict(self).items() if k != "value"}}


def _as_numpy(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected features of shape [N, D], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: features contain NaN or infinite values")
    return arr


def feature_stats(feats: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu [D], sigma [D, D])`` in float64; ``sigma`` is the ddof=1 covariance, as pytorch-fid computes it."""
    arr = _as_numpy(feats, "feature_stats")
    if arr.shape[0] < 2:
        raise ValueError(f"feature_stats needs at least 2 feature vectors for a covariance, got {arr.shape[0]}")
    return arr.mean(axis=0), np.cov(arr, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed as pytorch-fid does."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances of shapes {sigma1.shape} and {sigma2.shape} do not fit means of shape "
                         f"{mu1.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        logger.warning("FID: singular product of covariances; adding %g to their diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: the matrix square root has an imaginary component of "
                             f"{np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@METRICS.register("fid")
def fid(gen_feats: torch.Tensor | np.ndarray, ref_stats: Mapping[str, Any], *, extractor: str | None = None,
        weights_hash: str | None = None) -> FIDResult:
    """FID of generated pool features ``[N, D]`` against reference statistics (:func:`reference_stats`' dict).

    ``extractor`` / ``weights_hash``, when given (e.g. ``**extractor_protocol(ext)``), must match the reference's:
    statistics of two different networks are never compared.
    """
    for key in ("mu", "sigma"):
        if key not in ref_stats:
            raise KeyError(f"reference statistics lack {key!r}; got keys {sorted(ref_stats)}")
    ref_ext = str(ref_stats.get("extractor", "unknown"))
    ref_hash = str(ref_stats.get("weights_hash", "unknown"))
    if extractor is not None and extractor != ref_ext:
        raise ValueError(f"generated features come from extractor {extractor!r}, the reference from {ref_ext!r}")
    if weights_hash is not None and weights_hash != ref_hash:
        raise ValueError(f"generated features come from weights {weights_hash!r}, the reference from {ref_hash!r}")
    mu, sigma = feature_stats(gen_feats)
    mu_ref = np.asarray(ref_stats["mu"], np.float64)
    if mu.shape != mu_ref.shape:
        raise ValueError(f"generated features are {mu.shape[0]}-d, the reference statistics {mu_ref.shape[0]}-d")
    value = frechet_distance(mu, sigma, mu_ref, ref_stats["sigma"])
    return FIDResult(value=value, num_images=len(gen_feats),
                     num_reference=int(ref_stats.get("num_images", -1)), extractor=ref_ext,
                     weights_hash=ref_hash, reference=str(ref_stats.get("fingerprint", "unknown")))
