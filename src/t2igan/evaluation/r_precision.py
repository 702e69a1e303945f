"""R-precision, following the protocol DM-GAN released and SSA-GAN reports.

For each query (an image with the caption it was made from, or a real image with one of its captions) the
cosine similarity of the image's global DAMSM feature is taken to the true caption's sentence embedding and to
``candidates - 1`` captions drawn from *other classes*; the query is a hit when the true caption ranks first.
``trials`` queries (30,000 by default; queries are cycled in a seeded random order when there are fewer) are
split into ``folds`` equal folds; the result is the mean and the standard deviation (ddof=0) of the per-fold
hit rates.

Differences from the DM-GAN code, on purpose: every fold has exactly ``trials / folds`` trials (DM-GAN's
slicing drops one per fold), and a tie between the true caption and a negative gives the fraction of credit
its rank would get at random (1 / number of tied captions) instead of depending on index order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from t2igan.evaluation.base import METRICS

__all__ = ["RPrecisionResult", "r_precision"]


@dataclass(frozen=True)
class RPrecisionResult:
    mean: float
    std: float
    trials: int
    folds: int
    candidates: int
    seed: int

    def as_dict(self) -> dict[str, float | int]:
        return {"r_precision": self.mean, "r_precision_std": self.std, **{
            f"r_precision_{k}": v for k, v in asdict(self).items() if k not in ("mean", "std")}}


@METRICS.register("r_precision")
def r_precision(img_codes: torch.Tensor, true_caption: torch.Tensor, sent_codes: torch.Tensor,
                caption_class: torch.Tensor, image_class: torch.Tensor, *, candidates: int = 100,
                trials: int = 30000, folds: int = 10, seed: int = 0, batch: int = 2048) -> RPrecisionResult:
    """R-precision of queries against a caption pool.

    img_codes [N, D]: global image features of the N queries; true_caption [N]: index into the pool of each
    query's true caption; sent_codes [M, D]: the caption pool's sentence embeddings; caption_class [M] and
    image_class [N]: class ids (negatives come from captions whose class differs from the query's).
    """
    n, m = img_codes.shape[0], sent_codes.shape[0]
    if n == 0:
        raise ValueError("R-precision needs at least one query")
    if true_caption.shape != (n,) or image_class.shape != (n,) or caption_class.shape != (m,):
        raise ValueError("shapes disagree: img_codes [N, D], true_caption [N], image_class [N], "
                         "sent_codes [M, D], caption_class [M]")
    if candidates < 2:
        raise ValueError(f"candidates must be at least 2, got {candidates}")
    if trials % folds:
        raise ValueError(f"trials ({trials}) must be a multiple of folds ({folds})")
    img = F.normalize(img_codes.detach().double().cpu(), dim=1)
    sent = F.normalize(sent_codes.detach().double().cpu(), dim=1)
    cap_cls = caption_class.cpu().numpy()
    img_cls = image_class.cpu().numpy()
    true_idx = true_caption.cpu().numpy()
    rng = np.random.default_rng(seed)
    # queries in a seeded random order, cycled until there are `trials`
    order = np.concatenate([rng.permutation(n) for _ in range(-(-trials // n))])[:trials]
    # negatives: rejection-sample pool indices until none shares the query's class
    k = candidates - 1
    neg = rng.integers(0, m, size=(trials, k))
    for _ in range(1000):
        bad = cap_cls[neg] == img_cls[order][:, None]
        if not bad.any():
            break
        neg[bad] = rng.integers(0, m, size=int(bad.sum()))
    else:
        raise ValueError("could not draw negatives from other classes: almost every caption in the pool "
                         "shares the query's class")
    credit = np.empty(trials)
    for s in range(0, trials, batch):
        q = torch.from_numpy(order[s:s + batch])
        cand = torch.cat([torch.from_numpy(true_idx[order[s:s + batch]])[:, None],
                          torch.from_numpy(neg[s:s + batch])], dim=1)  # [b, candidates]
        scores = torch.einsum("bd,bkd->bk", img[q], sent[cand])
        true = scores[:, :1]
        higher = (scores[:, 1:] > true).any(dim=1)
        ties = (scores[:, 1:] == true).sum(dim=1)
        credit[s:s + batch] = torch.where(higher, 0.0, 1.0 / (1.0 + ties.double())).numpy()
    per_fold = credit.reshape(folds, -1).mean(axis=1)
    return RPrecisionResult(float(per_fold.mean()), float(per_fold.std()), trials, folds, candidates, seed)
