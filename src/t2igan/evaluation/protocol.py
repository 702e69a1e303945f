"""One evaluation protocol for every generator: which captions, which noise, which features, which reference.

:func:`evaluate_generator` takes a ``generate(caption_ids, indices)`` callable (a pipeline's, or a generator
being trained) and a test split, and computes the requested metrics with the protocol written down beside the
numbers:

* **Captions.** ``captions_per_image`` captions of every test image (its first K), ordered caption round by
  caption round (all images' first caption, then all second captions, ...), cycled when ``num_images`` asks for
  more; image ``i`` is generated from job ``i`` with the noise of ``(seed, i)`` (optionally truncated).
* **Sharding.** Generation and feature extraction are sharded by global index across ``torchrun`` processes and
  gathered in index order (:func:`t2igan.evaluation.features.extract_features`), so the numbers do not depend on
  the batch size or the number of processes.
* **Metrics.** ``fid``, ``kid`` and ``is`` in the feature space of ``extractor`` (FID Inception by default;
  ``inception-torchvision`` is DF-GAN's backend) against the test split's real images (statistics cached by
  dataset fingerprint and extractor); ``r_precision`` with DAMSM encoders (1 true + 99 captions of other classes);
  ``attributes`` (SynthBirds): an attribute classifier scores each image on the attributes its caption mentions,
  reported with the classifier's own accuracy on the real test images as the ceiling, and ``fid_sb``, FID in the
  classifier's feature space.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2igan.config import ConfigBase
from t2igan.data.base import TextImageDataset
from t2igan.data.collate import pad_captions
from t2igan.evaluation.features import build_extractor, extract_features, extractor_protocol, reference_stats
from t2igan.evaluation.fid import fid
from t2igan.evaluation.inception_score import inception_score
from t2igan.evaluation.kid import kid
from t2igan.evaluation.r_precision import r_precision
from t2igan.utils import dist as tdist

__all__ = ["EvalConfig", "EvalJobs", "METRIC_NAMES", "make_jobs", "dataset_fingerprint", "evaluate_generator",
           "default_cache_dir"]

log = logging.getLogger("t2igan.evaluation")

METRIC_NAMES = ("fid", "kid", "is", "r_precision", "attributes")

GenerateFn = Callable[[Sequence[Sequence[int]], Sequence[int]], torch.Tensor]


def default_cache_dir() -> Path:
    """``$T2IGAN_CACHE/stats`` or ``~/.cache/t2igan/stats``."""
    base = os.environ.get("T2IGAN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "t2igan")
    return Path(base) / "stats"


@dataclass
class EvalConfig(ConfigBase):
    metrics: tuple[str, ...] = ("fid", "kid", "is", "r_precision")
    num_images: int | None = None  # None: one image per (test image, caption) job, no cycling
    captions_per_image: int = 1
    seed: int = 0
    truncation: float | None = None  # DF-GAN samples with 0.88
    batch_size: int = 50
    extractor: str = "inception-fid"  # inception-fid | inception-torchvision | random-tiny (tests)
    extractor_weights: str | None = None  # the extractor's weights file (default: the usual cache)
    is_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    rp_trials: int = 30000
    rp_candidates: int = 100
    rp_folds: int = 10
    cache_dir: str | None = None  # reference statistics (default: ~/.cache/t2igan/stats)

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRIC_NAMES]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRIC_NAMES)}")
        if self.captions_per_image < 1:
            raise ValueError(f"captions_per_image must be at least 1, got {self.captions_per_image}")
        if self.num_images is not None and self.num_images < 2:
            raise ValueError(f"num_images must be at least 2, got {self.num_images}")


@dataclass(frozen=True)
class EvalJobs:
    """What image ``i`` is generated from: ``record[i]`` (index into the split), ``caption[i]`` (its caption)."""

    record: list[int]
    caption: list[int]
    pairs: int  # distinct (image, caption) jobs before cycling

    def __len__(self) -> int:
        return len(self.record)


def make_jobs(dataset: TextImageDataset, captions_per_image: int, num_images: int | None) -> EvalJobs:
    """The (record, caption) job of every generated image, caption round by caption round, cycled to N."""
    rounds: list[tuple[int, int]] = []
    for k in range(captions_per_image):
        rounds += [(r, k) for r, rec in enumerate(dataset.records) if k < len(rec.captions) and rec.captions[k]]
    if not rounds:
        raise ValueError(f"the {dataset.split} split has no captions to generate from")
    n = num_images if num_images is not None else len(rounds)
    jobs = [rounds[i % len(rounds)] for i in range(n)]
    return EvalJobs([r for r, _ in jobs], [c for _, c in jobs], len(rounds))


def dataset_fingerprint(dataset: TextImageDataset) -> str:
    """A short hash of what the real reference images are: dataset, split, image size, keys and file sizes."""
    h = hashlib.sha256()
    h.update(f"{dataset.corpus.name}|{dataset.split}|{dataset.image_size}|".encode())
    for r in dataset.records:
        size = r.path.stat().st_size if r.path.is_file() else -1
        h.update(f"{r.key}:{size}:{r.bbox}\n".encode())
    return f"{dataset.corpus.name}-{dataset.split}-{dataset.image_size}px-{h.hexdigest()[:16]}"


class _Combined(nn.Module):
    """Several extractors over the same images; outputs prefixed by the extractor's role."""

    name = "combined"

    def __init__(self, parts: dict[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for role, m in self.parts.items():
            for k, v in m(images).items():
                out[f"{role}.{k}"] = v
        return out


class _DamsmCodes(nn.Module):
    def __init__(self, image_encoder: nn.Module) -> None:
        super().__init__()
        self.enc = image_encoder

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"code": self.enc(images)[1].float()}


class _AttributeParts(nn.Module):
    """The attribute classifier's pooled features (FID-SB) and its logits per attribute, in one pass."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.classifier.features(images).float()
        return {"pool": f, **{f"logit_{a}": v.float() for a, v in self.classifier.logits(f).items()}}


def _ids(dataset: TextImageDataset, r: int, c: int) -> list[int]:
    return list(dataset.records[r].captions[c][: dataset.words_num])


@torch.no_grad()
def evaluate_generator(generate: GenerateFn, dataset: TextImageDataset, config: EvalConfig, *,
                       damsm: tuple[nn.Module, nn.Module] | None = None,
                       attribute_classifier: nn.Module | None = None, attribute_records: dict | None = None,
                       ceiling: Any = None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Generate for the test captions and compute ``config.metrics``.

    ``generate(caption_ids, indices)`` returns images [N, 3, H, W] in [-1, 1] for captions given as word ids,
    image ``n`` drawn with the noise of ``indices[n]`` (seed and truncation are the callable's business; they are
    recorded from ``config``). ``damsm`` = (text encoder, image encoder) for R-precision;
    ``attribute_classifier`` and ``attribute_records`` (SynthBirds ``read_attributes``) for attribute accuracy;
    ``ceiling`` the classifier's :class:`~t2igan.evaluation.attributes.CeilingResult` on real test images.
    Collective under torchrun: every rank calls it; every rank returns the same result.
    """
    device = torch.device(device)
    metrics = set(config.metrics)
    jobs = make_jobs(dataset, config.captions_per_image, config.num_images)
    n = len(jobs)
    parts: dict[str, nn.Module] = {}
    ext = None
    if metrics & {"fid", "kid", "is"}:
        kw = {"weights_path": config.extractor_weights} if config.extractor_weights else {}
        ext = build_extractor(config.extractor, **kw).to(device)
        parts["ext"] = ext
    if "r_precision" in metrics:
        if damsm is None:
            raise ValueError("r_precision needs the DAMSM encoders the model was trained with (--damsm DIR)")
        parts["damsm"] = _DamsmCodes(damsm[1].to(device).eval())
    if "attributes" in metrics:
        if attribute_classifier is None or attribute_records is None:
            raise ValueError("attributes needs a trained attribute classifier (t2igan train-evaluator) and a "
                             "SynthBirds dataset with attributes.jsonl")
        parts["attr"] = _AttributeParts(attribute_classifier.to(device).eval())

    def generated(indices: list[int]) -> torch.Tensor:
        ids = [_ids(dataset, jobs.record[i], jobs.caption[i]) for i in indices]
        return generate(ids, indices).float().clamp(-1, 1)

    feats = extract_features(_Combined(parts), generated, n, batch_size=config.batch_size, device=device)
    protocol: dict[str, Any] = {
        "num_images": n, "distinct_captions": jobs.pairs, "captions_per_image": config.captions_per_image,
        "test_images": len(dataset.records), "seed": config.seed, "noise": "image i: N(0,1) seeded by (seed, i)"
        + (f", truncated to [-2, 2] x {config.truncation}" if config.truncation else ""),
        "truncation": config.truncation, "world_size": tdist.world_size(), "image_size": dataset.image_size,
        "dataset": dataset.corpus.name, "split": dataset.split, "root": str(dataset.corpus.root)}
    results: dict[str, Any] = {}
    fingerprint = dataset_fingerprint(dataset)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()

    real_ds = dataset.with_mode(caption_mode="first")  # eval transform, one item per test image

    def real(indices: list[int]) -> torch.Tensor:
        return torch.stack([real_ds[i]["image"] for i in indices])

    if ext is not None:
        protocol.update(extractor_protocol(ext))
        if metrics & {"fid", "kid"}:
            ref = reference_stats(ext, fingerprint, real, len(dataset.records), cache,
                                  batch_size=config.batch_size, device=device)
            protocol["reference"] = {"fingerprint": fingerprint, "num_images": ref["num_images"],
                                     "cache": ref["path"]}
            if "fid" in metrics:
                results.update(fid(feats["ext.pool"], ref).as_dict())
            if "kid" in metrics:
                size = min(config.kid_subset_size, n, int(ref["num_features"]))
                results.update(kid(feats["ext.pool"], ref, subsets=config.kid_subsets, subset_size=size).as_dict())
        if "is" in metrics:
            if "ext.logits" not in feats:
                raise ValueError(f"extractor {config.extractor} has no logits for the Inception Score")
            results.update(inception_score(feats["ext.logits"], splits=min(config.is_splits, n),
                                           extractor=str(ext.name), weights_hash=str(ext.weights_hash)).as_dict())
    if "r_precision" in metrics:
        results.update(_r_precision(feats["damsm.code"], jobs, dataset, damsm[0], config, device))  # type: ignore
    if "attributes" in metrics:
        results.update(_attributes(feats, jobs, dataset, attribute_classifier, attribute_records, ceiling,
                                   fingerprint, real, cache, config, device))
    return {"metrics": {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "details": results, "protocol": protocol}


def _r_precision(codes: torch.Tensor, jobs: EvalJobs, dataset: TextImageDataset, text_encoder: nn.Module,
                 config: EvalConfig, device: torch.device) -> dict[str, Any]:
    """Generated images against 1 true + (candidates - 1) test captions of other classes (DAMSM codes)."""
    pool: list[tuple[int, int]] = [(r, c) for r, rec in enumerate(dataset.records)
                                   for c, cap in enumerate(rec.captions) if cap]
    where = {p: i for i, p in enumerate(pool)}
    text_encoder = text_encoder.to(device).eval()
    sents = []
    for s in range(0, len(pool), 256):
        chunk = [_ids(dataset, r, c) for r, c in pool[s:s + 256]]
        caps, lengths = pad_captions(chunk)
        sents.append(text_encoder(caps.to(device), lengths.to(device))[1].float().cpu())
    cls_pool = torch.as_tensor([dataset.records[r].class_id for r, _ in pool])
    true = torch.as_tensor([where[(r, c)] for r, c in zip(jobs.record, jobs.caption)])
    folds = config.rp_folds if config.rp_trials % config.rp_folds == 0 else 1
    res = r_precision(codes, true, torch.cat(sents), cls_pool, cls_pool[true], candidates=config.rp_candidates,
                      trials=config.rp_trials, folds=folds, seed=config.seed)
    return res.as_dict()


def _attributes(feats, jobs, dataset, classifier, records, ceiling, fingerprint, real, cache, config,
                device) -> dict[str, Any]:
    from t2igan.evaluation.attributes import AttributeFeatureExtractor, AttributeScorer

    scorer = AttributeScorer.for_classifier(classifier)
    preds = {a: feats[f"attr.logit_{a}"].argmax(dim=1) for a in scorer.names}
    truths, mentions = [], []
    for r, c in zip(jobs.record, jobs.caption):
        rec = records[dataset.records[r].key]
        truths.append(rec["attributes"])
        mentions.append(rec["captions"][c]["mentions"])
    scorer.update_predictions(preds, truths, mentions)
    out: dict[str, Any] = dict(scorer.result().as_dict())
    if ceiling is not None:
        out.update(ceiling.as_dict())
        out["attr_acc_relative"] = out["attr_acc"] / ceiling.overall if ceiling.overall > 0 else math.nan
    ext = AttributeFeatureExtractor(classifier)
    ref = reference_stats(ext, fingerprint, real, len(dataset.records), cache, batch_size=config.batch_size,
                          device=device)
    f = fid(feats["attr.pool"], ref)
    out["fid_sb"] = f.value
    out["fid_sb_extractor"] = f"{ext.name} ({ext.weights_hash[:12]})"
    return out
