"""Kernel Inception Distance (Bińkowski et al., 2018): the unbiased MMD² with a cubic polynomial kernel.

``k(x, y) = (x·y / D + 1)³`` on pool features; the MMD² estimate is averaged over ``subsets`` random subsets
of ``m = min(subset_size, N_gen, N_ref)`` samples drawn without replacement from each side, and the result
is their mean and standard deviation (ddof=0). The subsets are drawn exactly as torch-fidelity draws them
(``np.random.RandomState(seed)``, alternating ``choice(N_gen, m)`` and ``choice(N_ref, m)``), whose stream numpy
keeps stable across versions; with the default ``seed=2020`` and the same features the value equals
torch-fidelity's ``kid_features_to_metric``. Unlike torch-fidelity, the kernels are computed in float64 and a
set smaller than ``subset_size`` shrinks the subsets instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from t2igan.evaluation.base import METRICS
from t2igan.evaluation.fid import _as_numpy

__all__ = ["KIDResult", "kid", "polynomial_mmd2"]


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    num_images: int
    num_reference: int
    subsets: int
    subset_size: int
    seed: int
    extractor: str
    weights_hash: str
    reference: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {"kid": self.mean, "kid_std": self.std,
                **{f"kid_{k}": v for k, v in asdict(self).items() if k not in ("mean", "std")}}


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                    coef0: float = 1.0) -> float:
    """Unbiased MMD² of two equally sized samples ``[m, D]`` under ``k(a, b) = (gamma a·b + coef0)^degree``."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"polynomial_mmd2 needs two samples of the same size >= 2, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef0) ** degree
    k_yy = (y @ y.T * gamma + coef0) ** degree
    k_xy = (x @ y.T * gamma + coef0) ** degree
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


@METRICS.register("kid")
def kid(gen_feats: torch.Tensor | np.ndarray, reference: Mapping[str, Any] | torch.Tensor | np.ndarray, *,
        subsets: int = 100, subset_size: int = 1000, seed: int = 2020, extractor: str | None = None,
        weights_hash: str | None = None) -> KIDResult:
    """KID of generated pool features ``[N, D]`` against reference features.

    ``reference`` is :func:`reference_stats`' dict (its ``"features"`` are used and its protocol is recorded)
    or a plain ``[M, D]`` array. ``extractor`` / ``weights_hash``, when given, must match the reference's.
    """
    if isinstance(reference, Mapping):
        if "features" not in reference:
            raise KeyError(f"reference statistics lack 'features'; got keys {sorted(reference)}")
        ref = _as_numpy(reference["features"], "kid reference")
        ref_ext = str(reference.get("extractor", "unknown"))
        ref_hash = str(reference.get("weights_hash", "unknown"))
        ref_name = str(reference.get("fingerprint", "unknown"))
    else:
        ref = _as_numpy(reference, "kid reference")
        ref_ext = extractor or "unknown"
        ref_hash = weights_hash or "unknown"
        ref_name = "features"
    if extractor is not None and extractor != ref_ext:
        raise ValueError(f"generated features come from extractor {extractor!r}, the reference from {ref_ext!r}")
    if weights_hash is not None and weights_hash != ref_hash:
        raise ValueError(f"generated features come from weights {weights_hash!r}, the reference from {ref_hash!r}")
    gen = _as_numpy(gen_feats, "kid generated")
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(f"generated features are {gen.shape[1]}-d, the reference features {ref.shape[1]}-d")
    if subsets < 1:
        raise ValueError(f"subsets must be positive, got {subsets}")
    m = min(subset_size, gen.shape[0], ref.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 features on each side, got {gen.shape[0]} and {ref.shape[0]}")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = gen[rng.choice(gen.shape[0], m, replace=False)]
        b = ref[rng.choice(ref.shape[0], m, replace=False)]
        mmds[i] = polynomial_mmd2(a, b)
    return KIDResult(mean=float(mmds.mean()), std=float(mmds.std()), num_images=gen.shape[0],
                     num_reference=int(reference.get("num_images", ref.shape[0]))
                     if isinstance(reference, Mapping) else ref.shape[0],
                     subsets=subsets, subset_size=m, seed=seed, extractor=ref_ext, weights_hash=ref_hash,
                     reference=ref_name)
