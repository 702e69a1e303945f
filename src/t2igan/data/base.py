"""What every captioned-image dataset shares: its config, its in-memory index, and the torch Dataset.

A dataset reader (``attngan.py``, ``folder.py``) turns files on disk into a :class:`CaptionCorpus`: the
vocabulary and, for each split, a list of :class:`ImageRecord` (key, image path, optional CUB bounding box,
class id, captions as word ids). :class:`TextImageDataset` serves one split of it to a DataLoader with the
official preprocessing.

Randomness (caption choice, word subset for long captions, crop offset, flip) is drawn from a generator seeded
by ``(seed, epoch, index)``, so an item does not depend on DataLoader workers, batch size or process count,
and a resumed run sees exactly the items an uninterrupted one would. Call :meth:`TextImageDataset.set_epoch`
once per epoch.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from t2igan.config import ConfigBase
from t2igan.registry import Registry
from t2igan.text.vocab import Vocabulary, select_words

__all__ = [
    "DataConfig",
    "DataError",
    "ImageRecord",
    "CaptionCorpus",
    "TextImageDataset",
    "DATASETS",
    "load_corpus",
    "crop_to_bbox",
    "load_image",
    "train_load_size",
]

log = logging.getLogger("t2igan.data")


class DataError(ValueError):
    """A dataset on disk is missing a file or holds something unreadable; the message names the file."""


@dataclass
class DataConfig(ConfigBase):
    kind: Literal["cub", "synthbirds", "coco", "flowers", "folder"] = "synthbirds"  # dataset reader
    root: str = "data/synthbirds"  # dataset directory (AttnGAN layout, or a folder of images)
    image_size: int = 64  # side of the images served (64, 128, 256, or 299 for DAMSM)
    captions_per_image: int | None = None  # None: the dataset's own (CUB/flowers 10, COCO 5, folder: all)
    words_num: int = 18  # longest caption fed to the text encoder (official TEXT.WORDS_NUM)
    images_dir: str | None = None  # COCO/flowers: where the images are, if not under root
    vocab: str | None = None  # encode captions with this vocab.json / captions.pickle instead
    skip_bad_images: bool = False  # skip (and count) missing or unreadable images instead of failing
    test_fraction: float = 0.1  # folder datasets without train/test lists: share of images held out
    split_seed: int = 0  # folder datasets: seed of the deterministic split
    seed: int = 0  # seed of the per-item randomness (caption choice, crop, flip)
    # training images: the official resize to size*76/64 and random crop (true), or resize to size only, so
    # nothing at the frame's edge is cut off (false; SynthBirds, whose renderer already places birds at random
    # and whose beaks often touch the edge); both flip at random
    random_crop: bool = True
    num_workers: int = 0  # DataLoader worker processes
    # precomputed text embeddings per split (AttnGAN layout: SPLIT/NAME, [images, captions, dim]), e.g. StackGAN's
    # "char-CNN-RNN-embeddings.pickle"; items then carry the caption's embedding as "text_embedding"
    text_embeddings: str | None = None


@dataclass
class ImageRecord:
    key: str  # dataset key, e.g. '001.Black_footed_Albatross/Black_Footed_Albatross_0046_18'
    path: Path  # image file
    class_id: int  # class (species) id; unique per image where the dataset has no classes
    captions: list[list[int]]  # word ids of each caption, without padding
    bbox: tuple[float, float, float, float] | None = None  # CUB box (x, y, w, h) in pixels
    embeddings: Any = None  # precomputed text embeddings [captions, dim] (numpy float32), when configured


@dataclass
class CaptionCorpus:
    """A dataset's vocabulary and its records per split."""

    name: str
    root: Path
    vocab: Vocabulary
    splits: dict[str, list[ImageRecord]]
    captions_per_image: int | None
    info: dict[str, Any] = field(default_factory=dict)

    def records(self, split: str) -> list[ImageRecord]:
        if split not in self.splits:
            raise KeyError(f"dataset {self.name} has no split {split!r}; splits: {', '.join(self.splits)}")
        return self.splits[split]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "root": str(self.root), "vocab_size": len(self.vocab)}
        for split, recs in self.splits.items():
            out[f"{split}_images"] = len(recs)
            out[f"{split}_captions"] = sum(len(r.captions) for r in recs)
            out[f"{split}_classes"] = len({r.class_id for r in recs})
        out["captions_per_image"] = self.captions_per_image
        out.update(self.info)
        return out


DATASETS: Registry[Callable[[DataConfig], CaptionCorpus]] = Registry("dataset")


def load_corpus(config: DataConfig) -> CaptionCorpus:
    """Read the dataset described by ``config`` (both splits) with its registered reader."""
    # readers register themselves on import
    import t2igan.data.attngan  # noqa: F401
    import t2igan.data.folder  # noqa: F401

    corpus = DATASETS.get(config.kind)(config)
    if config.vocab:
        corpus = _reencode(corpus, Vocabulary.load(config.vocab), config.vocab)
    return corpus


def _reencode(corpus: CaptionCorpus, vocab: Vocabulary, source: str) -> CaptionCorpus:
    """Re-encode every caption with another vocabulary (unknown words dropped, as the official code does)."""
    if vocab == corpus.vocab:
        return corpus
    wordtoix = vocab.wordtoix
    table = np.array([wordtoix.get(w, -1) for w in corpus.vocab.words], dtype=np.int64)
    table[0] = -1
    unknown: dict[str, int] = {}
    splits = {}
    for split, recs in corpus.splits.items():
        new = []
        for r in recs:
            caps = []
            for cap in r.captions:
                mapped = table[np.asarray(cap, dtype=np.int64)] if cap else np.zeros(0, dtype=np.int64)
                for i in np.asarray(cap)[mapped < 0]:
                    w = corpus.vocab.word(int(i))
                    unknown[w] = unknown.get(w, 0) + 1
                caps.append([int(x) for x in mapped[mapped >= 0]])
            new.append(ImageRecord(r.key, r.path, r.class_id, caps, r.bbox))
        splits[split] = new
    if unknown:
        top = sorted(unknown, key=lambda w: -unknown[w])[:10]
        log.warning(
            "%d distinct caption words of %s are not in the vocabulary %s and are dropped (most frequent: %s)",
            len(unknown), corpus.name, source, ", ".join(top),
        )
    info = dict(corpus.info, vocab_source=str(source), words_dropped=sum(unknown.values()))
    return CaptionCorpus(corpus.name, corpus.root, vocab, splits, corpus.captions_per_image, info)


# -- images -------------------------------------------------------------------------------------------------
def crop_to_bbox(img: Image.Image, bbox: Sequence[float]) -> Image.Image:
    """The official CUB crop: a square of half-side int(0.75 * max(w, h)) around the box centre, clipped."""
    width, height = img.size
    x, y, w, h = bbox
    r = int(max(w, h) * 0.75)
    cx = int((2 * x + w) / 2)
    cy = int((2 * y + h) / 2)
    y1 = max(0, cy - r)
    y2 = min(height, cy + r)
    x1 = max(0, cx - r)
    x2 = min(width, cx + r)
    return img.crop((x1, y1, x2, y2))


def load_image(path: Path, bbox: Sequence[float] | None = None) -> Image.Image:
    """Open an image as RGB (cropped to the CUB box if given); a clear :class:`DataError` if unreadable."""
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    if bbox is not None:
        img = crop_to_bbox(img, bbox)
    return img


def train_load_size(image_size: int) -> int:
    """Side the official training transform resizes to before its random crop (size * 76 / 64)."""
    return int(image_size * 76 / 64)


def _resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """``transforms.Resize(size)`` on a PIL image: shorter side to ``size``, aspect kept, bilinear."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), Image.BILINEAR)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor [3, H, W] in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def train_transform(img: Image.Image, size: int, rng: np.random.Generator, random_crop: bool = True) -> Image.Image:
    """Official training transform: resize to size*76/64, random crop to size, random horizontal flip.

    Without ``random_crop`` the image is only resized (shorter side to ``size``, centre crop, as
    :func:`eval_transform`) before the flip: the whole frame is kept.
    """
    if random_crop:
        img = _resize_shorter(img, train_load_size(size))
        w, h = img.size
        left = int(rng.integers(0, w - size + 1))
        top = int(rng.integers(0, h - size + 1))
        img = img.crop((left, top, left + size, top + size))
    else:
        img = eval_transform(img, size)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def eval_transform(img: Image.Image, size: int) -> Image.Image:
    """Evaluation transform: resize shorter side to size, centre crop."""
    img = _resize_shorter(img, size)
    w, h = img.size
    left = int(round((w - size) / 2.0))
    top = int(round((h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


# -- the torch dataset ----------------------------------------------------------------------------------------
class TextImageDataset(torch.utils.data.Dataset):
    """One split of a :class:`CaptionCorpus` as (image, caption) items.

    ``caption_mode``: ``'random'`` (one random caption of each image per item, as in official training),
    ``'all'`` (one item per caption), or ``'first'`` (each image with its first caption).
    ``train`` selects the random crop/flip and the random word subset for long captions; otherwise images are
    centre-cropped and long captions keep their first ``words_num`` words. ``random_crop=False`` keeps the whole
    frame in training too (flip only); see :func:`train_transform`.
    """

    def __init__(
        self,
        corpus: CaptionCorpus,
        split: str,
        *,
        image_size: int,
        words_num: int = 18,
        train: bool = True,
        caption_mode: Literal["random", "all", "first"] = "random",
        seed: int = 0,
        skip_bad_images: bool = False,
        load_images: bool = True,
        random_crop: bool = True,
    ) -> None:
        if caption_mode not in ("random", "all", "first"):
            raise ValueError(f"caption_mode must be 'random', 'all' or 'first', got {caption_mode!r}")
        self.corpus = corpus
        self.split = split
        self.image_size = image_size
        self.words_num = words_num
        self.train = train
        self.caption_mode = caption_mode
        self.seed = seed
        self.epoch = 0
        self.load_images = load_images
        self.random_crop = random_crop
        self.skipped: list[tuple[str, str]] = []  # (path, reason)
        records = corpus.records(split)
        if skip_bad_images and load_images:
            records = self._drop_bad(records)
        records = self._drop_captionless(records)
        self.records = records
        self._items = self._index_items()

    def _index_items(self) -> list[tuple[int, int]]:
        if self.caption_mode == "all":  # every non-empty caption is an item
            return [(i, c) for i, r in enumerate(self.records) for c, cap in enumerate(r.captions) if cap]
        return [(i, -1) for i in range(len(self.records))]

    def long_captions(self) -> tuple[int, int, int]:
        """(captions longer than ``words_num``, all non-empty captions, the longest caption's length) in words."""
        lengths = [len(cap) for r in self.records for cap in r.captions if cap]
        return sum(n > self.words_num for n in lengths), len(lengths), max(lengths, default=0)

    def long_caption_note(self) -> str | None:
        """What happens to this split's captions longer than ``words_num``, or None when there are none."""
        over, total, longest = self.long_captions()
        if not over:
            return None
        fate = "keep a random subset of" if self.train else "are cut to their first"
        return (f"{over} of {total} {self.split} captions ({100 * over / total:.1f}%, the longest {longest} words) "
                f"{fate} data.words_num={self.words_num} words; raise data.words_num to keep them whole")

    def with_mode(self, *, caption_mode: Literal["random", "all", "first"], train: bool = False,
                  load_images: bool = True) -> TextImageDataset:
        """The same records (bad images already skipped) served another way."""
        other = copy.copy(self)
        other.caption_mode, other.train, other.load_images = caption_mode, train, load_images
        other.skipped = list(self.skipped)
        other._items = other._index_items()
        return other

    @classmethod
    def from_config(cls, config: DataConfig, split: str, corpus: CaptionCorpus | None = None,
                    **kwargs: Any) -> TextImageDataset:
        corpus = corpus if corpus is not None else load_corpus(config)
        kwargs.setdefault("train", split == "train")
        return cls(corpus, split, image_size=config.image_size, words_num=config.words_num, seed=config.seed,
                   skip_bad_images=config.skip_bad_images, random_crop=config.random_crop, **kwargs)

    @property
    def vocab(self) -> Vocabulary:
        return self.corpus.vocab

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._items)

    def _drop_bad(self, records: list[ImageRecord]) -> list[ImageRecord]:
        good = []
        for r in records:
            try:
                with Image.open(r.path) as im:
                    im.load()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                self.skipped.append((str(r.path), f"{type(exc).__name__}: {exc}"))
                continue
            good.append(r)
        if self.skipped:
            log.warning(
                "%s/%s: skipped %d of %d images that are missing or unreadable (first: %s: %s)",
                self.corpus.name, self.split, len(self.skipped), len(records), *self.skipped[0],
            )
        return good

    def _drop_captionless(self, records: list[ImageRecord]) -> list[ImageRecord]:
        """Images whose captions are all empty after encoding cannot be served; they are reported and dropped."""
        keep = [r for r in records if any(r.captions)]
        if len(keep) != len(records):
            empty = [r.key for r in records if not any(r.captions)]
            log.warning("%s/%s: %d images have no caption with a known word and are left out (first: %s)",
                        self.corpus.name, self.split, len(empty), empty[0])
        return keep

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch if self.train else 0, index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec_i, cap_i = self._items[index]
        rec = self.records[rec_i]
        rng = self._rng(index)
        if self.caption_mode == "random":
            cap_i = int(rng.integers(len(rec.captions)))
        elif self.caption_mode == "first":
            cap_i = 0
        # an empty caption (all words unknown) is replaced by the image's next non-empty one
        n = len(rec.captions)
        for k in range(n):
            if rec.captions[(cap_i + k) % n]:
                cap_i = (cap_i + k) % n
                break
        ids = rec.captions[cap_i]
        ids = select_words(ids, self.words_num, rng) if self.train else ids[: self.words_num]
        caption = torch.zeros(self.words_num, dtype=torch.long)
        caption[: len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        item: dict[str, Any] = {
            "caption": caption,
            "length": len(ids),
            "class_id": rec.class_id,
            "key": rec.key,
            "index": rec_i,
            "caption_index": cap_i,
        }
        if rec.embeddings is not None:  # one embedding per caption, in caption order
            item["text_embedding"] = torch.from_numpy(rec.embeddings[cap_i % len(rec.embeddings)])
        if self.load_images:
            img = load_image(rec.path, rec.bbox)
            img = (train_transform(img, self.image_size, rng, self.random_crop) if self.train
                   else eval_transform(img, self.image_size))
            item["image"] = to_tensor(img)
        return item
