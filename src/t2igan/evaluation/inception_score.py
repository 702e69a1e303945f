"""Inception Score (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over splits of the images.

Computed from the extractor's logits in float64 (softmax per image, ``p(y)`` the mean over the split), over
``splits`` (10) consecutive chunks ``[i N / splits, (i + 1) N / splits)``; the result is the mean and the
standard deviation with ddof=0 of the per-split scores, as torch-fidelity's ``isc_features_to_metric``.

Order: with ``shuffle=True`` (the default) the images are first permuted by
``np.random.RandomState(seed).permutation(N)``, exactly as torch-fidelity does (default seed 2020, so the value
equals torch-fidelity's on the same logits). This matters for text-to-image evaluation, where images come in
dataset order, grouped by class: in-order splits would each hold few classes and score low. ``shuffle=False``
splits in the given order (the original TF code's behaviour). With the ``inception-fid`` extractor the logits
are the 1008 logits without the fc bias, as in the original TF code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from t2igan.evaluation.base import METRICS

__all__ = ["InceptionScoreResult", "inception_score"]


@dataclass(frozen=True)
class InceptionScoreResult:
    mean: float
    std: float
    num_images: int
    splits: int
    shuffle: bool
    seed: int
    extractor: str
    weights_hash: str

    def as_dict(self) -> dict[str, float | int | str | bool]:
        return {"inception_score": self.mean, "inception_score_std": self.std,
                **{f"inception_score_{k}": v for k, v in asdict(self).items() if k not in ("mean", "std")}}


@METRICS.register("inception_score")
def inception_score(logits: torch.Tensor | np.ndarray, *, splits: int = 10, shuffle: bool = True,
                    seed: int = 2020, extractor: str = "unknown", weights_hash: str = "unknown"
                    ) -> InceptionScoreResult:
    """IS of ``logits [N, K]``; ``extractor`` / ``weights_hash`` label the result (see ``extractor_protocol``)."""
    x = logits.detach().cpu().double() if isinstance(logits, torch.Tensor) else torch.from_numpy(
        np.asarray(logits, dtype=np.float64))
    if x.dim() != 2:
        raise ValueError(f"inception_score: expected logits of shape [N, K], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("inception_score: logits contain NaN or infinite values")
    n = x.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score: need 1 <= splits <= number of images, got splits={splits}, N={n}")
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    scores = np.empty(splits)
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_q = p[lo:hi].mean(dim=0, keepdim=True).log()
        terms = p[lo:hi] * (log_p[lo:hi] - log_q)
        kl = torch.where(p[lo:hi] > 0, terms, 0.0).sum(dim=1).mean()  # 0 log 0 = 0 (underflowed classes)
        scores[i] = float(kl.exp())
    return InceptionScoreResult(mean=float(scores.mean()), std=float(scores.std()), num_images=n, splits=splits,
                                shuffle=shuffle, seed=seed, extractor=extractor, weights_hash=weights_hash)
