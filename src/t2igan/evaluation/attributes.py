"""Attribute accuracy and FID-SB on SynthBirds: an attribute classifier as the judge of generated birds.

SynthBirds records, for every image, the true value of each attribute (size, six part colours, beak length)
and, for every caption, which attributes it mentions. A small CNN trained on the real training images
(``t2igan train-evaluator``; see :mod:`t2igan.training.evaluator`) predicts every attribute of an image. A
generated image is then scored only on the attributes *its caption mentions*: an image made from "a bird with
a red crown" is right or wrong about its crown colour, and nothing else is asked of it.

* :class:`AttributeScorer` accumulates (correct, total) counts per attribute batch by batch; counts of shards
  add up (``merge`` / ``all_reduce``), so the value does not depend on batch size or world size.
* :func:`attribute_accuracy` (registered as ``"attributes"``) scores a tensor of images in one call.
* :func:`ceiling_accuracy` scores the real test images the same way (each image once per caption, on that
  caption's mentions): the best a generator could do in the eyes of this classifier.
* FID-SB (:func:`fid_sb`, registered as ``"fid_sb"``) is the Fréchet distance of generated and real images in
  the classifier's pooled feature space: a distribution distance that needs no ImageNet weights. Reference
  statistics are cached by dataset fingerprint and classifier weights.

The classifier records the fingerprint of the dataset it was trained on (:func:`synthbirds_fingerprint`, a
hash of ``attributes.jsonl``); :func:`load_attribute_classifier` compares it with the dataset being evaluated.

Real images are served the way the GAN's data pipeline serves them for evaluation (CUB bounding-box crop,
shorter side resized to ``image_size``, centre crop), so generated and real images are judged in one frame.
The ceiling is below 1 mainly for the beak: SynthBirds sometimes draws a large bird's beak partly outside the
frame, where neither the classifier nor a generator can show its colour or length.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from t2igan.config import ConfigBase
from t2igan.data.base import CaptionCorpus
from t2igan.data.synthetic import ATTRIBUTE_VALUES
from t2igan.evaluation.base import METRICS
from t2igan.evaluation.features import (
    EXTRACTORS,
    FeatureExtractor,
    extract_features,
    extractor_protocol,
    reference_cache_path,
    reference_stats,
)
from t2igan.evaluation.fid import feature_stats, fid
from t2igan.models.base import ModelBase

__all__ = [
    "AttributeClassifierConfig",
    "AttributeClassifier",
    "AttributeAccuracyResult",
    "AttributeScorer",
    "CeilingResult",
    "AttributeFeatureExtractor",
    "FIDSBResult",
    "FingerprintMismatchError",
    "SynthBirdsSplit",
    "synthbirds_fingerprint",
    "check_fingerprint",
    "model_fingerprint",
    "load_attribute_classifier",
    "load_synthbirds_split",
    "caption_targets",
    "attribute_accuracy",
    "ceiling_accuracy",
    "build_attribute_extractor",
    "reference_statistics",
    "fid_sb",
    "EVALUATOR_FILE",
    "FID_SB_EXTRACTOR",
]

log = logging.getLogger("t2igan.evaluation")

FID_SB_EXTRACTOR = "synthbirds-attributes"  # its name in the EXTRACTORS registry
EVALUATOR_FILE = "evaluator.json"  # written beside config.json/model.safetensors by train_evaluator
ATTRIBUTES_FILE = "attributes.jsonl"


def _default_attributes() -> dict[str, tuple[str, ...]]:
    return {a: tuple(v) for a, v in ATTRIBUTE_VALUES.items()}


# -- the classifier ------------------------------------------------------------------------------------------
@dataclass
class AttributeClassifierConfig(ConfigBase):
    image_size: int = 64  # inputs of another size are resized to this (bilinear) before the network
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)  # a full-resolution stem, then one stage per /2
    convs_per_stage: int = 2  # 3x3 conv-BN-ReLU layers per downsampling stage (the stem has one)
    dropout: float = 0.1  # before the heads, in training
    attributes: dict[str, tuple[str, ...]] = field(default_factory=_default_attributes)  # name -> values
    data_fingerprint: str = ""  # synthbirds_fingerprint of the dataset the weights were trained on

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive channel counts, got {self.widths}")
        if self.convs_per_stage < 1:
            raise ValueError(f"convs_per_stage must be at least 1, got {self.convs_per_stage}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.attributes:
            raise ValueError("attributes must name at least one attribute")
        for name, values in self.attributes.items():
            if not name.isidentifier():
                raise ValueError(f"attribute name {name!r} must be an identifier (it names a head's weights)")
            if len(values) < 2 or len(set(values)) != len(values):
                raise ValueError(f"attribute {name!r} needs at least two distinct values, got {list(values)}")

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class AttributeClassifier(ModelBase):
    """A small VGG-style CNN with one linear head per attribute.

    A 3x3 stem at full resolution keeps small parts (beak, crown) several pixels wide; each following stage
    halves the resolution. The globally averaged last stage is the feature vector (the FID-SB space, ``D =
    widths[-1]``); each head maps it to the logits of one attribute's values.
    """

    config_class = AttributeClassifierConfig
    config: AttributeClassifierConfig

    def __init__(self, config: AttributeClassifierConfig) -> None:
        super().__init__(config)
        w = config.widths
        layers: list[nn.Module] = [_ConvBNReLU(3, w[0], 1)]
        c = w[0]
        for width in w[1:]:
            layers.append(_ConvBNReLU(c, width, 2))
            layers += [_ConvBNReLU(width, width, 1) for _ in range(config.convs_per_stage - 1)]
            c = width
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({a: nn.Linear(c, len(v)) for a, v in config.attributes.items()})

    @property
    def attributes(self) -> dict[str, tuple[str, ...]]:
        return self.config.attributes

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float in [-1, 1] or uint8 -> float [B, 3, S, S] in [-1, 1] (S = image_size)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        x = images.float().div(127.5).sub(1.0) if images.dtype == torch.uint8 else images.float()
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=False)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, D] (D = widths[-1]): the space FID-SB is computed in."""
        return self.trunk(self.preprocess(images)).mean(dim=(2, 3))

    def logits(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads on features [B, D] -> attribute -> logits [B, len(values)]."""
        h = self.dropout(feats)
        return {a: head(h) for a, head in self.heads.items()}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images [B, 3, H, W] in [-1, 1] -> attribute name -> logits [B, number of values]."""
        return self.logits(self.features(images))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted value index per attribute (eval mode is the caller's business): name -> long [B]."""
        return {a: v.argmax(dim=1) for a, v in self(images).items()}


# -- fingerprints and loading --------------------------------------------------------------------------------
class FingerprintMismatchError(ValueError):
    """A classifier was trained on another dataset than the one it is asked to evaluate."""


def synthbirds_fingerprint(root: str | os.PathLike[str]) -> str:
    """A short stable hash of a SynthBirds dataset: sha256 of its ``attributes.jsonl`` (16 hex digits).

    ``attributes.jsonl`` holds every image's key, split, attributes, box and captions, so it changes whenever
    the rendered dataset does (another seed, size, split or count). Hashing it takes well under a second.
    """
    path = Path(root) / ATTRIBUTES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: attribute ground truth (and a fingerprint) exists only "
                                "for SynthBirds datasets")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    """sha256 (hex) of a module's state (names, shapes, values): the key of caches of features it computed."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def check_fingerprint(classifier: AttributeClassifier, data_root: str | os.PathLike[str], *,
                      strict: bool = False, source: str = "the attribute classifier") -> str:
    """Compare the classifier's recorded dataset fingerprint with ``data_root``'s; returns the dataset's.

    A mismatch (or a classifier that records none) is a warning, or a :class:`FingerprintMismatchError` with
    ``strict``; the message names both fingerprints and the dataset file.
    """
    actual = synthbirds_fingerprint(data_root)
    recorded = classifier.config.data_fingerprint
    if recorded != actual:
        what = ("records no dataset fingerprint" if not recorded
                else f"was trained on a dataset with fingerprint {recorded}")
        msg = (f"{source} {what}, but {Path(data_root) / ATTRIBUTES_FILE} has fingerprint {actual}; "
               "its accuracies and FID-SB reference are not comparable (retrain with t2igan train-evaluator)")
        if strict:
            raise FingerprintMismatchError(msg)
        log.warning("%s", msg)
    return actual


def load_attribute_classifier(directory: str | os.PathLike[str],
                              data_root: str | os.PathLike[str] | None = None, *, strict: bool = False,
                              map_location: str | torch.device = "cpu") -> AttributeClassifier:
    """Load a classifier dir (``config.json`` + ``model.safetensors``) in eval mode.

    With ``data_root``, the recorded fingerprint is checked against the dataset's (:func:`check_fingerprint`).
    """
    model = AttributeClassifier.from_pretrained(directory, map_location=map_location).eval()
    if data_root is not None:
        check_fingerprint(model, data_root, strict=strict, source=f"attribute classifier {directory}")
    return model


# -- real images and their labels ----------------------------------------------------------------------------
@dataclass
class SynthBirdsSplit:
    """One split of SynthBirds in memory: images as uint8, labels as value indices, captions' mentions."""

    images: torch.Tensor  # uint8 [N, 3, S, S]
    keys: list[str]
    labels: dict[str, torch.Tensor]  # attribute -> long [N] (index into the attribute's values)
    truths: list[dict[str, str]]  # attribute -> value name, per image
    mentions: list[list[list[str]]]  # per image, per caption: the attributes it mentions

    def __len__(self) -> int:
        return len(self.keys)


def _read_records(root: Path) -> dict[str, dict[str, Any]]:
    from t2igan.data.synthetic import read_attributes

    return read_attributes(root)


def load_synthbirds_split(root: str | os.PathLike[str], split: str, image_size: int,
                          attributes: Mapping[str, Sequence[str]] | None = None,
                          records: Mapping[str, Mapping[str, Any]] | None = None,
                          corpus: CaptionCorpus | None = None) -> SynthBirdsSplit:
    """Decode every image of a SynthBirds split once (box crop, resize, centre crop: as GAN data is served).

    ``attributes`` (name -> values; default: SynthBirds' tables) fixes the label indices. ``records``
    (:func:`t2igan.data.synthetic.read_attributes`) and ``corpus`` (:func:`t2igan.data.base.load_corpus`) may
    be passed to avoid reading them once per split. A non-SynthBirds folder (no ``attributes.jsonl``) is a
    :class:`FileNotFoundError` naming the file.
    """
    from t2igan.data.base import DataConfig, eval_transform, load_corpus, load_image

    root = Path(root)
    attributes = dict(attributes) if attributes is not None else _default_attributes()
    if not (root / ATTRIBUTES_FILE).is_file():
        raise FileNotFoundError(f"{root / ATTRIBUTES_FILE} not found: {root} is not a SynthBirds dataset "
                                "(attribute labels exist only for SynthBirds)")
    recs = records if records is not None else _read_records(root)
    if corpus is None:
        corpus = load_corpus(DataConfig(kind="synthbirds", root=str(root), image_size=image_size))
    items = corpus.records(split)
    if not items:
        raise ValueError(f"{root}: split {split!r} has no images")
    arr = np.empty((len(items), image_size, image_size, 3), dtype=np.uint8)
    keys, truths, mentions = [], [], []
    labels = {a: torch.empty(len(items), dtype=torch.long) for a in attributes}
    index = {a: {v: i for i, v in enumerate(vals)} for a, vals in attributes.items()}
    for n, item in enumerate(items):
        arr[n] = np.asarray(eval_transform(load_image(item.path, item.bbox), image_size))
        rec = recs.get(item.key)
        if rec is None:
            raise KeyError(f"{root / ATTRIBUTES_FILE}: no record for image key {item.key!r}")
        truth = rec["attributes"]
        for a in attributes:
            value = truth.get(a)
            if value not in index[a]:
                raise ValueError(f"{root / ATTRIBUTES_FILE}: {item.key}: attribute {a!r} has value "
                                 f"{value!r}, not one of {', '.join(attributes[a])}")
            labels[a][n] = index[a][value]
        keys.append(item.key)
        truths.append(dict(truth))
        mentions.append([list(c["mentions"]) for c in rec["captions"]])
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return SynthBirdsSplit(images, keys, labels, truths, mentions)


def caption_targets(records: Mapping[str, Mapping[str, Any]], keys: Sequence[str],
                    caption_indices: Sequence[int] | torch.Tensor,
                    ) -> tuple[list[dict[str, str]], list[list[str]]]:
    """(truths, mentions) for images generated from caption ``caption_indices[i]`` of image ``keys[i]``.

    ``records`` is :func:`t2igan.data.synthetic.read_attributes`'s result. The caption index is the position
    in the image's caption file (as ``TextImageDataset`` items report it in ``caption_index``).
    """
    idx = caption_indices.tolist() if torch.is_tensor(caption_indices) else list(caption_indices)
    if len(idx) != len(keys):
        raise ValueError(f"{len(keys)} keys but {len(idx)} caption indices")
    truths, mentions = [], []
    for key, c in zip(keys, idx):
        rec = records.get(key)
        if rec is None:
            raise KeyError(f"image key {key!r} is not in {ATTRIBUTES_FILE}")
        caps = rec["captions"]
        if not 0 <= int(c) < len(caps):
            raise IndexError(f"image {key!r} has {len(caps)} captions; caption index {c} is out of range")
        truths.append(dict(rec["attributes"]))
        mentions.append(list(caps[int(c)]["mentions"]))
    return truths, mentions


# -- attribute accuracy --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttributeAccuracyResult:
    """Accuracy over mentioned attribute instances: micro (``overall``), macro and per attribute.

    An attribute never mentioned has accuracy NaN and is left out of the macro mean.
    """

    overall: float  # correct / total over every (image, mentioned attribute) pair
    macro: float  # mean of the per-attribute accuracies (attributes with a count)
    per_attribute: dict[str, float]
    counts: dict[str, int]  # mentioned instances per attribute
    correct: dict[str, int]
    total: int

    def as_dict(self, prefix: str = "attr_acc") -> dict[str, float | int]:
        out: dict[str, float | int] = {prefix: self.overall, f"{prefix}_macro": self.macro}
        out.update({f"{prefix}_{a}": v for a, v in self.per_attribute.items()})
        out[f"{prefix}_count"] = self.total
        out.update({f"{prefix}_count_{a}": n for a, n in self.counts.items()})
        return out

    def relative_to(self, ceiling: AttributeAccuracyResult) -> float:
        """``overall / ceiling.overall``: the share of the classifier's own real-image accuracy reached."""
        return self.overall / ceiling.overall if ceiling.overall > 0 else math.nan


def _result_from_counts(names: Sequence[str], correct: torch.Tensor, total: torch.Tensor
                        ) -> AttributeAccuracyResult:
    c = [int(x) for x in correct.tolist()]
    n = [int(x) for x in total.tolist()]
    per = {a: (ci / ni if ni else math.nan) for a, ci, ni in zip(names, c, n)}
    seen = [v for v in per.values() if not math.isnan(v)]
    total_n = sum(n)
    return AttributeAccuracyResult(
        overall=sum(c) / total_n if total_n else math.nan,
        macro=float(np.mean(seen)) if seen else math.nan,
        per_attribute=per, counts=dict(zip(names, n)), correct=dict(zip(names, c)), total=total_n)


class AttributeScorer:
    """Accumulates per-attribute (correct, total) counts of images scored on their captions' mentions.

    ``update(images, truths, mentions)`` runs the classifier; ``update_predictions`` takes predictions made
    elsewhere. ``truths[i]`` maps attribute -> true value (name or index) for image ``i`` (the image whose
    caption was used); ``mentions[i]`` lists the attributes that caption mentions; only those are counted.
    Counts are integers, so shards merge exactly: ``merge(other)``, or ``all_reduce()`` across ranks.
    """

    def __init__(self, attributes: Mapping[str, Sequence[str]], classifier: AttributeClassifier | None = None,
                 *, batch_size: int = 256, device: str | torch.device | None = None,
                 amp: bool = False) -> None:
        self.attributes = {a: tuple(v) for a, v in attributes.items()}
        self.names = list(self.attributes)
        self._index = {a: {v: i for i, v in enumerate(vals)} for a, vals in self.attributes.items()}
        self.classifier = classifier
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else (
            next(classifier.parameters()).device if classifier is not None else torch.device("cpu"))
        self.amp = amp
        self._counts = torch.zeros(2, len(self.names), dtype=torch.long)  # [correct; total]

    @classmethod
    def for_classifier(cls, classifier: AttributeClassifier, **kwargs: Any) -> AttributeScorer:
        return cls(classifier.attributes, classifier, **kwargs)

    # counts
    @property
    def counts(self) -> torch.Tensor:
        """long [2, A]: correct and total per attribute (in ``names`` order)."""
        return self._counts.clone()

    def add_counts(self, counts: torch.Tensor) -> None:
        if tuple(counts.shape) != tuple(self._counts.shape):
            raise ValueError(f"counts of shape {tuple(counts.shape)} do not fit {tuple(self._counts.shape)}")
        self._counts += counts.to("cpu", torch.long)

    def merge(self, other: AttributeScorer) -> AttributeScorer:
        """Add another scorer's counts (same attributes) to this one; returns self."""
        if other.attributes != self.attributes:
            raise ValueError("cannot merge scorers over different attribute tables")
        self.add_counts(other._counts)
        return self

    def all_reduce(self) -> None:
        """Sum the counts over all ranks (a no-op in one process)."""
        from t2igan.utils.dist import is_distributed

        if is_distributed():
            import torch.distributed as dist

            t = self._counts.clone()
            if dist.get_backend() == "nccl":
                t = t.cuda()
            dist.all_reduce(t)
            self._counts = t.cpu()

    def reset(self) -> None:
        self._counts.zero_()

    # scoring
    def _truth_index(self, a: str, value: str | int, i: int) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(self.attributes[a]):
                raise ValueError(f"image {i}: attribute {a!r} value index {value} is outside "
                                 f"0..{len(self.attributes[a]) - 1}")
            return int(value)
        try:
            return self._index[a][value]
        except (KeyError, TypeError):
            raise ValueError(f"image {i}: attribute {a!r} has value {value!r}, not one of "
                             f"{', '.join(self.attributes[a])}") from None

    def update_predictions(self, predictions: Mapping[str, torch.Tensor], truths: Sequence[Mapping[str, Any]],
                           mentions: Sequence[Iterable[str]]) -> None:
        """Count predicted value indices (name -> long [B]) against ``truths`` on the mentioned attributes."""
        b = len(truths)
        if len(mentions) != b:
            raise ValueError(f"{b} truths but {len(mentions)} mention lists")
        for a in self.names:
            if a not in predictions:
                raise KeyError(f"predictions lack attribute {a!r}")
        mask = torch.zeros(len(self.names), b, dtype=torch.bool)
        target = torch.zeros(len(self.names), b, dtype=torch.long)
        pos = {a: k for k, a in enumerate(self.names)}
        for i, (truth, ment) in enumerate(zip(truths, mentions)):
            for a in ment:
                k = pos.get(a)
                if k is None:
                    raise ValueError(f"image {i}: caption mentions unknown attribute {a!r}; known: "
                                     f"{', '.join(self.names)}")
                if a not in truth:
                    raise ValueError(f"image {i}: caption mentions {a!r} but its truth has no value for it")
                mask[k, i] = True
                target[k, i] = self._truth_index(a, truth[a], i)
        pred = torch.stack([predictions[a].detach().to("cpu", torch.long).reshape(-1) for a in self.names])
        if pred.shape[1] != b:
            raise ValueError(f"predictions for {pred.shape[1]} images but {b} truths")
        self._counts[0] += ((pred == target) & mask).sum(dim=1)
        self._counts[1] += mask.sum(dim=1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The classifier's predicted value indices for ``images`` (chunks of ``batch_size``, eval mode)."""
        if self.classifier is None:
            raise RuntimeError("this AttributeScorer has no classifier; use update_predictions")
        was = self.classifier.training
        self.classifier.eval()
        out: dict[str, list[torch.Tensor]] = {a: [] for a in self.names}
        try:
            for s in range(0, images.shape[0], self.batch_size):
                x = images[s:s + self.batch_size].to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    logits = self.classifier(x)
                for a in self.names:
                    out[a].append(logits[a].float().argmax(dim=1).cpu())
        finally:
            self.classifier.train(was)
        return {a: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for a, v in out.items()}

    def update(self, images: torch.Tensor, truths: Sequence[Mapping[str, Any]],
               mentions: Sequence[Iterable[str]]) -> None:
        """Classify ``images`` [B, 3, H, W] in [-1, 1]; count them on their captions' mentioned attributes."""
        if images.shape[0] != len(truths):
            raise ValueError(f"{images.shape[0]} images but {len(truths)} truths")
        self.update_predictions(self.predict(images), truths, mentions)

    def result(self) -> AttributeAccuracyResult:
        return _result_from_counts(self.names, self._counts[0], self._counts[1])


@METRICS.register("attributes")
def attribute_accuracy(classifier: AttributeClassifier, images: torch.Tensor,
                       truths: Sequence[Mapping[str, Any]], mentions: Sequence[Iterable[str]], *,
                       batch_size: int = 256, device: str | torch.device | None = None,
                       amp: bool = False) -> AttributeAccuracyResult:
    """Attribute accuracy of generated ``images`` [N, 3, H, W] in [-1, 1].

    ``truths[i]``: the true attributes (name -> value) of the real image whose caption produced image ``i``;
    ``mentions[i]``: the attributes that caption mentions. Only mentioned attributes are scored. See
    :func:`caption_targets` to build both from dataset keys and caption indices.
    """
    scorer = AttributeScorer.for_classifier(classifier, batch_size=batch_size, device=device, amp=amp)
    scorer.update(images, truths, mentions)
    return scorer.result()


@dataclass(frozen=True)
class CeilingResult:
    """The classifier on real images: ``mention_weighted`` is the ceiling for :func:`attribute_accuracy`."""

    mention_weighted: AttributeAccuracyResult  # each image once per caption, on that caption's mentions
    per_image: AttributeAccuracyResult  # each image once, on every attribute
    split: str
    images: int

    @property
    def overall(self) -> float:
        return self.mention_weighted.overall

    def as_dict(self) -> dict[str, float | int]:
        return {**self.mention_weighted.as_dict("ceiling_attr_acc"),
                **self.per_image.as_dict("real_attr_acc"), "ceiling_images": self.images}


def ceiling_accuracy(classifier: AttributeClassifier, root: str | os.PathLike[str] | None = None,
                     split: str = "test", *, data: SynthBirdsSplit | None = None, batch_size: int = 256,
                     device: str | torch.device | None = None, amp: bool = False) -> CeilingResult:
    """The classifier's accuracy on the real images of ``split``, scored as generated images are.

    Every real image is scored once per caption on that caption's mentioned attributes (equivalently: each
    attribute weighted by how often captions mention it), which is directly comparable with
    :func:`attribute_accuracy` of images generated from the same captions. ``per_image`` is the plain accuracy
    over every attribute of every image. Pass ``data`` (from :func:`load_synthbirds_split`) to skip decoding.
    """
    if data is None:
        if root is None:
            raise ValueError("ceiling_accuracy needs a dataset root or preloaded data")
        data = load_synthbirds_split(root, split, classifier.config.image_size, classifier.attributes)
    scorer = AttributeScorer.for_classifier(classifier, batch_size=batch_size, device=device, amp=amp)
    pred = scorer.predict(data.images)
    names = scorer.names
    # every attribute of every image
    plain_correct = torch.stack([(pred[a] == data.labels[a]).sum() for a in names])
    plain = _result_from_counts(names, plain_correct, torch.full((len(names),), len(data), dtype=torch.long))
    # each image repeated once per caption, scored on its mentions
    owner = [i for i, caps in enumerate(data.mentions) for _ in caps]
    owner_t = torch.as_tensor(owner, dtype=torch.long)
    scorer.update_predictions({a: pred[a][owner_t] for a in names}, [data.truths[i] for i in owner],
                              [m for caps in data.mentions for m in caps])
    return CeilingResult(scorer.result(), plain, split, len(data))


# -- FID-SB --------------------------------------------------------------------------------------------------
class AttributeFeatureExtractor(FeatureExtractor):
    """The classifier's pooled features as a :mod:`t2igan.evaluation.features` extractor (``"pool"`` only).

    ``name`` is ``"synthbirds-attributes"``, ``weights_hash`` the sha256 of the classifier's state
    (:func:`model_fingerprint`), so cached reference statistics never outlive the weights they came from.
    """

    def __init__(self, classifier: AttributeClassifier) -> None:
        super().__init__(FID_SB_EXTRACTOR, model_fingerprint(classifier), classifier.config.feature_dim, None)
        self.classifier = classifier.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": self.classifier.features(images).float()}


@EXTRACTORS.register(FID_SB_EXTRACTOR)
def build_attribute_extractor(weights_path: str | os.PathLike[str],
                              data_root: str | os.PathLike[str] | None = None,
                              strict: bool = False) -> AttributeFeatureExtractor:
    """The extractor of a trained classifier dir (fingerprint checked against ``data_root`` when given)."""
    return AttributeFeatureExtractor(load_attribute_classifier(weights_path, data_root, strict=strict))


def _device_of(ext: AttributeFeatureExtractor, device: str | torch.device | None) -> torch.device:
    """``device`` (the extractor is moved there), or where the classifier's weights are."""
    if device is None:
        return next(ext.parameters()).device
    ext.to(device)
    return torch.device(device)


def _real_images(data: SynthBirdsSplit):
    def get_batch(idx: list[int]) -> torch.Tensor:
        return data.images[torch.as_tensor(idx, dtype=torch.long)].float().div(127.5).sub(1.0)

    return get_batch


def reference_statistics(classifier: AttributeClassifier | AttributeFeatureExtractor,
                         root: str | os.PathLike[str], split: str = "test", *,
                         cache_dir: str | os.PathLike[str] | None = None, data: SynthBirdsSplit | None = None,
                         batch_size: int = 256, device: str | torch.device | None = None) -> dict[str, Any]:
    """FID-SB statistics (``mu``, ``sigma``, ...) of the real images of ``split``.

    With ``cache_dir`` they go through :func:`t2igan.evaluation.features.reference_stats`: cached per dataset
    fingerprint + split (``synthbirds-<fingerprint>-<split>``) and classifier weights, written atomically.
    Without it they are computed and not stored. ``device``: where to run (default: the classifier's).
    """
    if isinstance(classifier, AttributeFeatureExtractor):
        ext = classifier
    else:
        ext = AttributeFeatureExtractor(classifier)
    device = _device_of(ext, device)
    fp = f"synthbirds-{synthbirds_fingerprint(root)}-{split}"
    if data is None and cache_dir is not None:  # a cache hit needs no decoding, but reference_stats needs n
        path = reference_cache_path(cache_dir, fp, ext)
        n = _cached_num_images(path) if path.is_file() else None
        if n is not None:
            try:
                return reference_stats(ext, fp, _cache_miss, n, cache_dir, batch_size=batch_size,
                                       device=device)
            except _CacheMiss:  # the cached protocol differs: decode the images and recompute
                pass
    if data is None:
        data = load_synthbirds_split(root, split, ext.classifier.config.image_size, ext.classifier.attributes)
    if cache_dir is not None:
        return reference_stats(ext, fp, _real_images(data), len(data), cache_dir, batch_size=batch_size,
                               device=device)
    feats = extract_features(ext, _real_images(data), len(data), batch_size=batch_size, device=device)["pool"]
    mu, sigma = feature_stats(feats)
    return {"mu": mu, "sigma": sigma, "num_images": len(data), **extractor_protocol(ext), "fingerprint": fp}


def _cached_num_images(path: Path) -> int | None:
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            return int(json.loads(str(z["protocol"]))["num_images"])
    except Exception:  # unreadable: reference_stats recomputes from decoded images
        return None


class _CacheMiss(Exception):
    pass


def _cache_miss(idx: list[int]) -> torch.Tensor:
    raise _CacheMiss


@dataclass(frozen=True)
class FIDSBResult:
    """FID-SB: the Fréchet distance in the attribute classifier's feature space."""

    value: float
    num_images: int
    num_reference: int
    weights_hash: str
    reference: str  # the reference's dataset fingerprint and split

    def as_dict(self) -> dict[str, float | int | str]:
        return {"fid_sb": self.value, **{f"fid_sb_{k}": v for k, v in asdict(self).items() if k != "value"}}


@METRICS.register("fid_sb")
def fid_sb(classifier: AttributeClassifier, images: torch.Tensor | Callable[[list[int]], torch.Tensor],
           root: str | os.PathLike[str], split: str = "test", *, num_images: int | None = None,
           cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 256,
           device: str | torch.device | None = None) -> FIDSBResult:
    """FID-SB of generated images against the real ``split`` of ``root``.

    ``images``: a tensor [N, 3, H, W] in [-1, 1], or ``get_batch(indices) -> images`` with ``num_images``
    (so that large sets need not be held in memory). Features are extracted sharded across ranks (collective
    when distributed); reference statistics are cached in ``cache_dir`` when given (``train_evaluator`` leaves
    the test split's in the classifier dir). ``device``: where to run (default: the classifier's).
    """
    ext = AttributeFeatureExtractor(classifier)
    device = _device_of(ext, device)
    n = images.shape[0] if isinstance(images, torch.Tensor) else num_images
    if n is None:
        raise ValueError("fid_sb: pass num_images with a get_batch function")
    ref = reference_statistics(ext, root, split, cache_dir=cache_dir, batch_size=batch_size, device=device)
    gen = extract_features(ext, images, n, batch_size=batch_size, device=device)["pool"]
    r = fid(gen, ref, **extractor_protocol(ext))
    return FIDSBResult(r.value, r.num_images, r.num_reference, r.weights_hash, r.reference)
