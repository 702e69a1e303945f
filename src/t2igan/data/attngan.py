"""CUB-200-2011, COCO-2014 and Oxford-102 in the AttnGAN metadata layout.

Expected layout (the files the AttnGAN / SSA-GAN / DF-GAN data archives ship)::

    ROOT/
      captions.pickle            [train_captions, test_captions, ixtoword, wordtoix] (or captions_DAMSM.pickle);
                                 built from text/ and written here when absent
      train/filenames.pickle     list of keys; test/filenames.pickle likewise
      train/class_info.pickle    class id per key (CUB, flowers); COCO has none (one class per image)
      text/<key>.txt             one caption per line
      CUB_200_2011/images/<key>.jpg, images.txt, bounding_boxes.txt      (CUB: images are bbox-cropped)
      images/<key>.jpg  or  images/{train2014,val2014}/<key>.jpg           (COCO; --images-dir to move it)
      jpg/<name>.jpg  or  images/<key>.jpg                                 (Oxford-102)

Captions are tokenized as the official code does; caption ``i * captions_per_image + k`` of a split belongs to
image ``i`` of that split's ``filenames.pickle``.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

from t2igan.data.base import DATASETS, CaptionCorpus, DataConfig, DataError, ImageRecord
from t2igan.text.vocab import Vocabulary, tokenize
from t2igan.utils.io import atomic_write, safe_load_pickle

__all__ = [
    "read_cub",
    "read_coco",
    "read_flowers",
    "read_caption_file",
    "read_cub_bboxes",
    "load_or_build_captions",
    "write_captions_pickle",
    "DEFAULT_CAPTIONS_PER_IMAGE",
]

log = logging.getLogger("t2igan.data")

DEFAULT_CAPTIONS_PER_IMAGE = {"cub": 10, "synthbirds": 10, "flowers": 10, "coco": 5}
CAPTION_PICKLES = ("captions.pickle", "captions_DAMSM.pickle")
SPLITS = ("train", "test")
_HAS_WORD = re.compile(r"\w")


def read_caption_file(path: Path, captions_per_image: int) -> list[list[str]]:
    """Tokenized captions of one image: the first ``captions_per_image`` lines that hold a word."""
    if not path.is_file():
        raise DataError(f"caption file not found: {path}")
    text = path.read_bytes().decode("utf-8", errors="replace")
    captions = []
    for line in text.split("\n"):
        # the official code skips lines without any \w run, but keeps one whose words are all non-ASCII
        if not _HAS_WORD.search(line.replace("\ufffd\ufffd", " ")):
            continue
        captions.append(tokenize(line))
        if len(captions) == captions_per_image:
            break
    if len(captions) < captions_per_image:
        raise DataError(
            f"{path}: has {len(captions)} captions, but {captions_per_image} per image are configured "
            "(set captions_per_image lower, or fix the file)"
        )
    return captions


def _read_keys(root: Path, split: str) -> list[str]:
    path = root / split / "filenames.pickle"
    if not path.is_file():
        raise DataError(f"missing split list {path} (expected the AttnGAN metadata layout under {root})")
    keys = safe_load_pickle(path)
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise DataError(f"{path}: expected a list of file keys (strings)")
    return list(keys)


def _read_class_ids(root: Path, split: str, n: int, offset: int) -> list[int]:
    path = root / split / "class_info.pickle"
    if not path.is_file():
        # COCO: no classes, every image is its own class (the official code uses arange)
        return list(range(offset, offset + n))
    ids = safe_load_pickle(path)
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: expected a list of integer class ids") from exc
    if len(ids) != n:
        raise DataError(f"{path}: has {len(ids)} class ids but {split}/filenames.pickle lists {n} images")
    return ids


def read_text_embeddings(path: Path, n: int, captions_per_image: int):
    """A split's precomputed text embeddings (StackGAN's ``char-CNN-RNN-embeddings.pickle``) as float32
    [images, captions, dim], read with the restricted unpickler; the count must match the split list."""
    import numpy as np

    if not path.is_file():
        raise DataError(f"text embeddings not found: {path} (data.text_embeddings names a file in each split "
                        "directory, e.g. char-CNN-RNN-embeddings.pickle from the StackGAN data)")
    obj = safe_load_pickle(path)
    try:
        arr = np.asarray(obj, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: expected an array of embeddings [images, captions, dim]") from exc
    if arr.ndim == 2:  # one embedding per image
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise DataError(f"{path}: expected embeddings [images, captions, dim], got shape {tuple(arr.shape)}")
    if arr.shape[0] != n:
        raise DataError(f"{path}: holds embeddings of {arr.shape[0]} images but the split lists {n}")
    if arr.shape[1] not in (1, captions_per_image):
        log.warning("%s: %d embeddings per image but %d captions per image; caption k uses embedding k mod %d",
                    path, arr.shape[1], captions_per_image, arr.shape[1])
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: holds non-finite values")
    return arr


def write_captions_pickle(path: Path, train: list[list[int]], test: list[list[int]], vocab: Vocabulary) -> None:
    """Write the official 4-list ``captions.pickle`` (protocol 2, as AttnGAN writes it)."""
    with atomic_write(path, "wb") as f:
        pickle.dump([train, test, vocab.ixtoword, vocab.wordtoix], f, protocol=2)


def load_or_build_captions(
    root: Path, keys: dict[str, list[str]], captions_per_image: int, *, write: bool = True
) -> tuple[Vocabulary, dict[str, list[list[int]]], str]:
    """Captions as word ids per split, from ``captions.pickle`` if present, else built from ``text/``.

    Returns (vocabulary, {split: captions}, source description).
    """
    for name in CAPTION_PICKLES:
        path = root / name
        if path.is_file():
            obj = safe_load_pickle(path)
            vocab = Vocabulary.from_captions_pickle(path)
            out = {}
            for i, split in enumerate(SPLITS):
                caps = obj[i]
                expected = len(keys[split]) * captions_per_image
                if len(caps) != expected:
                    raise DataError(
                        f"{path}: the {split} list has {len(caps)} captions, expected {expected} "
                        f"({len(keys[split])} images x {captions_per_image} captions per image); "
                        "is captions_per_image right for this dataset?"
                    )
                out[split] = [[int(w) for w in c] for c in caps]
                bad = [w for c in out[split] for w in c if not 0 < w < len(vocab)]
                if bad:
                    raise DataError(f"{path}: {split} captions hold word id {bad[0]} outside 1..{len(vocab) - 1}")
            return vocab, out, str(path)
    tokens = {
        split: [c for k in keys[split] for c in read_caption_file(root / "text" / f"{k}.txt", captions_per_image)]
        for split in SPLITS
    }
    vocab = Vocabulary.build(tokens["train"], tokens["test"])
    out = {split: [vocab.encode_tokens(t) for t in tokens[split]] for split in SPLITS}
    if write:
        path = root / CAPTION_PICKLES[0]
        try:
            write_captions_pickle(path, out["train"], out["test"], vocab)
            log.info("wrote %s (vocabulary of %d words)", path, len(vocab))
        except OSError as exc:
            log.warning("could not write %s (%s); the vocabulary is rebuilt on every load", path, exc)
    return vocab, out, f"{root / 'text'} (built)"


def read_cub_bboxes(root: Path) -> dict[str, tuple[float, float, float, float]]:
    """Key -> (x, y, w, h) from CUB's ``images.txt`` and ``bounding_boxes.txt`` (row i pairs with row i)."""
    base = root / "CUB_200_2011"
    files = []
    for name in ("images.txt", "bounding_boxes.txt"):
        path = base / name
        if not path.is_file():
            raise DataError(f"CUB file not found: {path}")
        files.append([ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()])
    images, boxes = files
    if len(images) != len(boxes):
        raise DataError(f"{base}: images.txt has {len(images)} rows but bounding_boxes.txt has {len(boxes)}")
    out = {}
    for row, (img, box) in enumerate(zip(images, boxes), start=1):
        if len(img) < 2 or len(box) < 5:
            raise DataError(f"{base}: malformed row {row} in images.txt or bounding_boxes.txt")
        try:
            # the official code reads the box with pandas .astype(int): values are truncated to integers
            x, y, w, h = (float(int(float(v))) for v in box[1:5])
        except ValueError as exc:
            raise DataError(f"{base / 'bounding_boxes.txt'}: row {row} is not numeric: {' '.join(box)}") from exc
        key = img[1].rsplit(".", 1)[0]
        out[key] = (x, y, w, h)
    return out


def _read_attngan(config: DataConfig, kind: str) -> CaptionCorpus:
    root = Path(config.root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    cpi = config.captions_per_image or DEFAULT_CAPTIONS_PER_IMAGE[kind]
    keys = {split: _read_keys(root, split) for split in SPLITS}
    vocab, captions, source = load_or_build_captions(root, keys, cpi)
    bboxes = read_cub_bboxes(root) if kind in ("cub", "synthbirds") else {}
    locate = _image_locator(root, config, kind)
    splits: dict[str, list[ImageRecord]] = {}
    offset = 0
    missing: list[str] = []
    for split in SPLITS:
        class_ids = _read_class_ids(root, split, len(keys[split]), offset)
        offset += len(keys[split])
        embeddings = (read_text_embeddings(root / split / config.text_embeddings, len(keys[split]), cpi)
                      if config.text_embeddings else None)
        recs = []
        for i, key in enumerate(keys[split]):
            path = locate(key)
            if path is None:
                missing.append(key)
                continue
            bbox = bboxes.get(key) if bboxes else None
            if bboxes and bbox is None:
                raise DataError(f"{root / 'CUB_200_2011' / 'images.txt'}: no bounding box for {key}")
            recs.append(ImageRecord(key, path, class_ids[i], captions[split][i * cpi:(i + 1) * cpi], bbox,
                                    embeddings[i] if embeddings is not None else None))
        splits[split] = recs
    if missing:
        where = _image_dir_hint(root, config, kind)
        if not config.skip_bad_images:
            raise DataError(f"image file not found for key {missing[0]!r} under {where} "
                            f"({len(missing)} missing in all; --set data.skip_bad_images=true on train/pretrain-damsm skips them)")
        log.warning("%s: skipped %d images whose files are missing under %s (first: %s)",
                    root, len(missing), where, missing[0])
    info = {"captions_source": source, "missing_images": len(missing)}
    return CaptionCorpus(kind, root, vocab, splits, cpi, info)


def _image_dir_hint(root: Path, config: DataConfig, kind: str) -> Path:
    if config.images_dir:
        return Path(config.images_dir)
    return root / "CUB_200_2011" / "images" if kind in ("cub", "synthbirds") else root / "images"


def _image_locator(root: Path, config: DataConfig, kind: str):
    """A function key -> image path (or None) that tries the layouts users have."""
    base = _image_dir_hint(root, config, kind)
    exts = (".jpg", ".jpeg", ".png")

    def candidates(key: str) -> list[Path]:
        name = key.rsplit("/", 1)[-1]
        if kind in ("cub", "synthbirds"):
            return [base / key]
        if kind == "coco":
            sub = "train2014" if "train2014" in key else "val2014" if "val2014" in key else ""
            c = [base / key, base / name]
            if sub:
                c += [base / sub / name, root / sub / name, root / "images" / sub / name]
            return c
        # flowers: StackGAN archives keep images in jpg/, keyed by class folders in text/
        return [base / key, base / name, root / "jpg" / name, root / key]

    def locate(key: str) -> Path | None:
        for stem in candidates(key):
            for ext in exts:
                p = stem.with_name(stem.name + ext)
                if p.is_file():
                    return p
        return None

    return locate


@DATASETS.register("cub")
def read_cub(config: DataConfig) -> CaptionCorpus:
    return _read_attngan(config, "cub")


@DATASETS.register("synthbirds")
def read_synthbirds(config: DataConfig) -> CaptionCorpus:
    """SynthBirds is written in the CUB layout and read by the CUB code path."""
    return _read_attngan(config, "synthbirds")


@DATASETS.register("coco")
def read_coco(config: DataConfig) -> CaptionCorpus:
    return _read_attngan(config, "coco")


@DATASETS.register("flowers")
def read_flowers(config: DataConfig) -> CaptionCorpus:
    return _read_attngan(config, "flowers")
