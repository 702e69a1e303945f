"""A folder of the user's own images with captions.

Two ways to give captions:

- ``image.jpg`` beside ``image.txt`` (one caption per line), anywhere under the root;
- a ``captions.jsonl`` at the root, one JSON object per line: ``{"image": "birds/a.jpg", "caption": "..."}``
  or ``{"image": ..., "captions": ["...", "..."]}`` (several lines may name the same image).

Keys are image paths relative to the root without the extension. Images in sub-folders take the first folder
as their class; images at the root are each their own class. The split comes from ``train.txt`` /
``test.txt`` (one key or relative image path per line) when present, otherwise it is drawn deterministically
from a hash of each key, so adding images never moves existing ones between splits. The vocabulary is the
root's ``vocab.json`` when present (keep it fixed when pretrained encoders depend on it), otherwise it is built
from the train and then the test captions. (Images called ``train`` or ``test`` at the root keep their
``.txt`` as captions; use other names for split lists then.)
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from t2igan.data.base import DATASETS, CaptionCorpus, DataConfig, DataError, ImageRecord
from t2igan.text.vocab import Vocabulary, tokenize

__all__ = ["read_folder", "IMAGE_EXTENSIONS"]

log = logging.getLogger("t2igan.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _key(root: Path, path: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _read_jsonl(path: Path) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        if not isinstance(obj, dict) or "image" not in obj:
            raise DataError(f"{path}:{lineno}: expected an object with an 'image' field")
        caps = obj.get("captions", obj.get("caption"))
        if isinstance(caps, str):
            caps = [caps]
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise DataError(f"{path}:{lineno}: 'caption' must be a string or 'captions' a list of strings")
        key = Path(obj["image"]).with_suffix("").as_posix()
        captions.setdefault(key, []).extend(caps)
    return captions


def _in_test(key: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _read_list(path: Path) -> list[str]:
    return [Path(ln.strip()).with_suffix("").as_posix() if Path(ln.strip()).suffix.lower() in IMAGE_EXTENSIONS
            else ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


@DATASETS.register("folder")
def read_folder(config: DataConfig) -> CaptionCorpus:
    root = Path(config.root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    if config.text_embeddings:
        raise DataError(f"data.text_embeddings={config.text_embeddings!r}: precomputed embeddings are read from "
                        "the AttnGAN layout (cub, coco, flowers), not from a folder dataset")
    images: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            key = _key(root, p)
            if key in images:
                raise DataError(f"{images[key]} and {p} have the same name apart from the extension; "
                                "captions could not tell them apart (rename one)")
            images[key] = p
    if not images:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    jsonl = root / "captions.jsonl"
    if jsonl.is_file():
        raw = _read_jsonl(jsonl)
        unknown = sorted(set(raw) - set(images))
        if unknown:
            raise DataError(f"{jsonl}: names image {unknown[0]!r} which is not under {root}"
                            f" ({len(unknown)} such entries)")
        source = str(jsonl)
    else:
        raw = {}
        for key, img in images.items():
            txt = img.with_suffix(".txt")
            if txt.is_file():
                raw[key] = txt.read_bytes().decode("utf-8", errors="replace").splitlines()
        source = "<image>.txt files"
    captions: dict[str, list[list[str]]] = {}
    no_caption = []
    for key in images:
        toks = [t for t in (tokenize(c) for c in raw.get(key, [])) if t]
        if config.captions_per_image is not None:
            if len(toks) < config.captions_per_image:
                where = jsonl if jsonl.is_file() else images[key].with_suffix(".txt")
                raise DataError(f"{where}: {key} has {len(toks)} captions, but "
                                f"captions_per_image={config.captions_per_image}")
            toks = toks[: config.captions_per_image]
        if toks:
            captions[key] = toks
        else:
            no_caption.append(key)
    if no_caption:
        msg = (f"{root}: {len(no_caption)} images have no caption (first: {images[no_caption[0]]}; "
               f"expected {Path(no_caption[0]).name}.txt beside it or an entry in captions.jsonl)")
        if not config.skip_bad_images:
            raise DataError(msg + "; --set data.skip_bad_images=true on train/pretrain-damsm leaves them out")
        log.warning(msg + "; left out")
    keys = [k for k in images if k in captions]
    # train.txt/test.txt are split lists, unless they are the captions of images called train/test
    lists = [n for n in ("train", "test") if (root / f"{n}.txt").is_file() and n not in images]
    if lists:
        split_keys = {}
        for split in ("train", "test"):
            path = root / f"{split}.txt"
            listed = _read_list(path) if split in lists else []
            missing = [k for k in listed if k not in captions]
            if missing:
                raise DataError(f"{path}: lists {missing[0]!r}, which is not a captioned image under {root}")
            split_keys[split] = listed
        if not split_keys["train"]:
            split_keys["train"] = [k for k in keys if k not in set(split_keys["test"])]
        split_source = "train.txt/test.txt"
    else:
        test = [k for k in keys if _in_test(k, config.test_fraction, config.split_seed)]
        test_set = set(test)
        split_keys = {"train": [k for k in keys if k not in test_set], "test": test}
        split_source = f"hash split, test_fraction={config.test_fraction}, seed={config.split_seed}"
    vocab_path = root / "vocab.json"
    if vocab_path.is_file():
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.build(*([c for k in split_keys[s] for c in captions[k]] for s in ("train", "test")))
    classes: dict[str, int] = {}
    splits = {}
    for split in ("train", "test"):
        recs = []
        for key in split_keys[split]:
            parts = key.split("/")
            cls = classes.setdefault(parts[0] if len(parts) > 1 else f"<{key}>", len(classes))
            recs.append(ImageRecord(key, images[key], cls, [vocab.encode_tokens(t) for t in captions[key]]))
        splits[split] = recs
    info = {"captions_source": source, "split_source": split_source, "images_without_captions": len(no_caption)}
    return CaptionCorpus("folder", root, vocab, splits, config.captions_per_image, info)
