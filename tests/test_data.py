"""Dataset readers (AttnGAN CUB/COCO/flowers layout, folders), the torch dataset, transforms and batching."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CUB_CAPTIONS, gradient_image, write_pickle
from t2igan.data import (
    DataConfig,
    DataError,
    TextImageDataset,
    collate_batch,
    crop_to_bbox,
    load_corpus,
    make_loader,
    sort_by_length,
)
from t2igan.data.attngan import read_cub_bboxes
from t2igan.data.base import eval_transform, load_image, to_tensor, train_load_size, train_transform
from t2igan.text.vocab import Vocabulary, tokenize
from t2igan.utils.io import UnsafePickleError

# The tiny CUB vocabulary, worked out by hand from conftest.TINY_CUB_CAPTIONS (first 3 captions with a word of
# each file; train files first, then test, words in order of first appearance).
W = {f"w{i}": 13 + i for i in range(25)}
EXPECTED_WORDS = ["<end>", "a", "small", "red", "bird", "with", "black", "wings", "this", "has", "crown", "the", "is",
                  *W, "caf", "red_wing", "bird2", "blue", "green", "tiny", "yellow"]
LONG_IDS = list(range(13, 38))  # w0..w24
EXPECTED_TRAIN = {
    "001.Alpha/Alpha_0001": [[1, 2, 3, 4, 5, 6, 7], [8, 4, 9, 1, 3, 10], [11, 4, 12, 2]],
    "001.Alpha/Alpha_0002": [LONG_IDS, [1, 38, 4], [39, 40]],
    "002.Beta/Beta_0003": [[1, 41, 4], [41, 7], [11, 4, 12, 41]],
}
EXPECTED_TEST = {
    "003.Gamma/Gamma_0004": [[1, 42, 4], [42, 10], [1, 4, 5, 42, 7]],
    "003.Gamma/Gamma_0005": [[1, 43, 44, 4], [44], [11, 43, 4]],
}


def _pickle_load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


# -- CUB layout: captions, vocabulary, captions.pickle --------------------------------------------------------------


def test_expected_words_are_consistent():
    # guards the hand-made table above
    assert len(EXPECTED_WORDS) == 45 and EXPECTED_WORDS.index("caf") == 38 and EXPECTED_WORDS.index("yellow") == 44


def test_cub_builds_and_writes_captions_pickle(tiny_cub):
    pickle_path = tiny_cub.root / "captions.pickle"
    assert not pickle_path.exists()
    corpus = load_corpus(tiny_cub.config())
    assert corpus.vocab.words == EXPECTED_WORDS
    assert corpus.info["captions_source"].endswith("(built)")
    assert {r.key: r.captions for r in corpus.records("train")} == EXPECTED_TRAIN
    assert {r.key: r.captions for r in corpus.records("test")} == EXPECTED_TEST
    assert corpus.captions_per_image == 3
    assert "extra" not in corpus.vocab  # 4th caption of Gamma_0005 is beyond captions_per_image

    # the written pickle is the official 4-list, protocol 2
    assert pickle_path.is_file()
    assert pickle_path.read_bytes()[:2] == b"\x80\x02"
    train_caps, test_caps, ixtoword, wordtoix = _pickle_load(pickle_path)
    assert train_caps == [c for k in tiny_cub.keys["train"] for c in EXPECTED_TRAIN[k]]
    assert test_caps == [c for k in tiny_cub.keys["test"] for c in EXPECTED_TEST[k]]
    assert ixtoword == dict(enumerate(EXPECTED_WORDS))
    assert wordtoix == {w: i for i, w in enumerate(EXPECTED_WORDS)}

    # ... and equals what Vocabulary.build gives for the tokenized captions (first 3 lines with a word)
    def tokens(split):
        out = []
        for key in tiny_cub.keys[split]:
            caps = [tokenize(line) for line in TINY_CUB_CAPTIONS[key]]
            out += [c for c in caps if c][:3]
        return out

    assert Vocabulary.build(tokens("train"), tokens("test")).ixtoword == ixtoword

    # a second load reads the pickle (the text/ folder is no longer needed)
    shutil.rmtree(tiny_cub.root / "text")
    again = load_corpus(tiny_cub.config())
    assert again.info["captions_source"] == str(pickle_path)
    assert again.vocab == corpus.vocab
    assert [r.captions for r in again.records("train")] == [r.captions for r in corpus.records("train")]


def test_cub_records(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    train, test = corpus.records("train"), corpus.records("test")
    assert [r.key for r in train] == tiny_cub.keys["train"]
    assert [r.key for r in test] == tiny_cub.keys["test"]
    assert [r.class_id for r in train] == [1, 1, 2]
    assert [r.class_id for r in test] == [3, 3]
    assert all(r.path == tiny_cub.image_path(r.key) for r in train + test)
    boxes = {r.key: r.bbox for r in train + test}
    # rows of images.txt and bounding_boxes.txt pair by position, whatever the split order
    assert boxes["001.Alpha/Alpha_0001"] == (10.0, 20.0, 30.0, 40.0)
    assert boxes["001.Alpha/Alpha_0002"] == (5.0, 10.0, 20.0, 30.0)  # "5.7 10.2 20.9 30.5" truncated
    assert boxes["002.Beta/Beta_0003"] == (30.0, 30.0, 60.0, 60.0)
    assert boxes["003.Gamma/Gamma_0005"] == (10.0, 10.0, 60.0, 80.0)
    summary = corpus.summary()
    assert summary["train_images"] == 3 and summary["test_captions"] == 6 and summary["train_classes"] == 2
    with pytest.raises(KeyError, match="val"):
        corpus.records("val")


def test_existing_captions_pickle_is_authoritative(tiny_cub):
    words = ["<end>", "zz", "yy", "xx"]
    train = [[1, 2], [3], [1], [2], [2, 3], [3], [1], [1], [2]]
    test = [[3, 3], [1], [2], [1], [2], [3]]
    write_pickle(tiny_cub.root / "captions.pickle",
                 [train, test, dict(enumerate(words)), {w: i for i, w in enumerate(words)}])
    shutil.rmtree(tiny_cub.root / "text")
    corpus = load_corpus(tiny_cub.config())
    assert corpus.vocab.words == words
    assert corpus.records("train")[0].captions == [[1, 2], [3], [1]]
    assert corpus.records("test")[1].captions == [[1], [2], [3]]


def test_captions_damsm_pickle_name_is_read(tiny_cub):
    words = ["<end>", "zz"]
    write_pickle(tiny_cub.root / "captions_DAMSM.pickle",
                 [[[1]] * 9, [[1]] * 6, dict(enumerate(words)), {w: i for i, w in enumerate(words)}])
    corpus = load_corpus(tiny_cub.config())
    assert corpus.vocab.words == words
    assert corpus.info["captions_source"] == str(tiny_cub.root / "captions_DAMSM.pickle")


def test_captions_pickle_with_wrong_count(tiny_cub):
    words = ["<end>", "zz"]
    path = tiny_cub.root / "captions.pickle"
    write_pickle(path, [[[1]] * 8, [[1]] * 6, dict(enumerate(words)), {w: i for i, w in enumerate(words)}])
    with pytest.raises(DataError, match="expected 9") as exc:
        load_corpus(tiny_cub.config())
    assert str(path) in str(exc.value)


def test_captions_pickle_with_bad_word_id(tiny_cub):
    words = ["<end>", "zz"]
    write_pickle(tiny_cub.root / "captions.pickle",
                 [[[1]] * 8 + [[5]], [[1]] * 6, dict(enumerate(words)), {w: i for i, w in enumerate(words)}])
    with pytest.raises(DataError, match="word id 5"):
        load_corpus(tiny_cub.config())


def test_dataset_without_writable_root_still_loads(tiny_cub, monkeypatch):
    import t2igan.data.attngan as attngan

    def fail(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(attngan, "write_captions_pickle", fail)
    corpus = load_corpus(tiny_cub.config())
    assert corpus.vocab.words == EXPECTED_WORDS
    assert not (tiny_cub.root / "captions.pickle").exists()


# -- the vocab option ---------------------------------------------------------------------------------------------------


def test_config_vocab_reencodes_captions(tiny_cub, tmp_path):
    vocab_path = tmp_path / "other_vocab.json"
    Vocabulary(["<end>", "bird", "red", "a", "wings"]).save(vocab_path)
    corpus = load_corpus(tiny_cub.config(vocab=str(vocab_path)))
    assert corpus.vocab.words == ["<end>", "bird", "red", "a", "wings"]
    recs = {r.key: r for r in corpus.records("train") + corpus.records("test")}
    # "a small red bird with black wings" -> a red bird wings; "this bird has a red crown" -> bird a red; ...
    assert recs["001.Alpha/Alpha_0001"].captions == [[3, 2, 1, 4], [1, 3, 2], [1]]
    assert recs["001.Alpha/Alpha_0002"].captions == [[], [3, 1], []]
    assert recs["003.Gamma/Gamma_0004"].captions == [[3, 1], [], [3, 1, 4]]
    assert corpus.info["vocab_source"] == str(vocab_path)
    # dropped tokens, counted by hand: train 9 + 28 + 5, test 5 + 5
    assert corpus.info["words_dropped"] == 52
    # an empty caption is replaced by the image's next non-empty one
    ds = TextImageDataset(corpus, "train", image_size=32, train=False, caption_mode="first", load_images=False)
    item = ds[1]
    assert item["key"] == "001.Alpha/Alpha_0002"
    assert item["caption_index"] == 1 and item["length"] == 2
    assert item["caption"][:3].tolist() == [3, 1, 0]


def test_config_vocab_from_captions_pickle(tiny_cub, tmp_path):
    other = tmp_path / "captions.pickle"
    words = ["<end>", "blue", "bird"]
    write_pickle(other, [[], [], dict(enumerate(words)), {w: i for i, w in enumerate(words)}])
    corpus = load_corpus(tiny_cub.config(vocab=str(other)))
    assert corpus.vocab.words == words
    recs = {r.key: r for r in corpus.records("train")}
    assert recs["002.Beta/Beta_0003"].captions == [[1, 2], [1], [2, 1]]


# -- CUB bounding boxes ---------------------------------------------------------------------------------------------------


def test_crop_to_bbox_arithmetic():
    img = gradient_image(100, 80, blue=7)
    # box (10, 20, 30, 40): r = int(0.75 * 40) = 30, centre (25, 40) -> (-5, 10, 55, 70) clipped to (0, 10, 55, 70)
    out = crop_to_bbox(img, (10, 20, 30, 40))
    assert out.size == (55, 60)
    arr = np.asarray(out)
    assert arr[0, 0].tolist() == [0, 10, 7]
    assert arr[-1, -1].tolist() == [54, 69, 7]
    assert np.array_equal(arr, np.asarray(img)[10:70, 0:55])


def test_crop_to_bbox_centre_is_truncated():
    img = gradient_image(100, 80, blue=7)
    # box (10, 20, 31, 41): r = int(30.75) = 30, centre (int(25.5), int(40.5)) = (25, 40): same crop as above
    out = crop_to_bbox(img, (10, 20, 31, 41))
    assert out.size == (55, 60)
    assert np.asarray(out)[0, 0].tolist() == [0, 10, 7]


def test_crop_to_bbox_at_the_border_is_not_square():
    img = gradient_image(100, 80, blue=7)
    # box (80, 60, 20, 16): r = 15, centre (90, 68) -> (75, 53, 105, 83) clipped to (75, 53, 100, 80)
    out = crop_to_bbox(img, (80, 60, 20, 16))
    assert out.size == (25, 27)
    arr = np.asarray(out)
    assert arr[0, 0].tolist() == [75, 53, 7]
    assert arr[-1, -1].tolist() == [99, 79, 7]


def test_crop_inside_the_image_is_square():
    img = gradient_image(120, 120, blue=0)
    # box (30, 30, 60, 60): r = 45, centre (60, 60) -> (15, 15, 105, 105)
    out = crop_to_bbox(img, (30, 30, 60, 60))
    assert out.size == (90, 90)
    assert np.asarray(out)[0, 0].tolist() == [15, 15, 0]


def test_read_cub_bboxes_truncates_like_pandas(tmp_path):
    base = tmp_path / "CUB_200_2011"
    base.mkdir()
    (base / "images.txt").write_text("1 001.A/a_1.jpg\n2 002.B/b_2.jpg\n\n", encoding="utf-8")
    (base / "bounding_boxes.txt").write_text("1 10.7 0.99 30.5 40.999\n2 3 4 5 6\n", encoding="utf-8")
    assert read_cub_bboxes(tmp_path) == {"001.A/a_1": (10.0, 0.0, 30.0, 40.0), "002.B/b_2": (3.0, 4.0, 5.0, 6.0)}


def test_load_image_applies_the_box(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    recs = {r.key: r for r in corpus.records("train")}
    rec = recs["001.Alpha/Alpha_0001"]  # 100x80, box (10, 20, 30, 40) -> crop (0, 10, 55, 70)
    full = np.asarray(Image.open(rec.path).convert("RGB"))
    crop = load_image(rec.path, rec.bbox)
    assert crop.size == (55, 60)
    arr = np.asarray(crop)
    assert np.array_equal(arr, full[10:70, 0:55])
    # JPEG is nearly lossless on the gradient: pixel (x, y) ~ (x, y, blue)
    blue = tiny_cub.blues[rec.key]
    assert np.abs(arr[0, 0].astype(int) - [0, 10, blue]).max() <= 4
    assert np.abs(arr[-1, -1].astype(int) - [54, 69, blue]).max() <= 4
    # 64x96 image with the truncated box (5, 10, 20, 30): r = 22, centre (15, 25) -> (0, 3, 37, 47)
    rec = recs["001.Alpha/Alpha_0002"]
    crop = load_image(rec.path, rec.bbox)
    assert crop.size == (37, 44)
    assert np.abs(np.asarray(crop)[0, 0].astype(int) - [0, 3, tiny_cub.blues[rec.key]]).max() <= 4


# -- loader errors --------------------------------------------------------------------------------------------------


def test_missing_image_names_the_key(tiny_cub):
    tiny_cub.image_path("002.Beta/Beta_0003").unlink()
    with pytest.raises(DataError, match="002.Beta/Beta_0003"):
        load_corpus(tiny_cub.config())
    corpus = load_corpus(tiny_cub.config(skip_bad_images=True))
    assert [r.key for r in corpus.records("train")] == ["001.Alpha/Alpha_0001", "001.Alpha/Alpha_0002"]
    assert corpus.info["missing_images"] == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image(tiny_cub, damage):
    path = tiny_cub.image_path("001.Alpha/Alpha_0001")
    if damage == "garbage":
        path.write_bytes(b"this is not a jpeg at all")
    else:
        path.write_bytes(path.read_bytes()[:400])
    corpus = load_corpus(tiny_cub.config())  # only existence is checked while indexing
    ds = TextImageDataset(corpus, "train", image_size=32, train=False)
    with pytest.raises(DataError) as exc:
        ds[0]
    assert str(path) in str(exc.value)
    ds[1]  # the others still load

    skipping = TextImageDataset.from_config(tiny_cub.config(skip_bad_images=True), "train", corpus=corpus)
    assert len(skipping) == 2
    assert len(skipping.skipped) == 1 and skipping.skipped[0][0] == str(path)
    assert [r.key for r in skipping.records] == ["001.Alpha/Alpha_0002", "002.Beta/Beta_0003"]
    assert skipping[0]["image"].shape == (3, 32, 32)


def test_too_few_captions_names_the_text_file(tiny_cub):
    # every file has 3 captions with a word (blank and punctuation-only lines do not count)
    with pytest.raises(DataError, match="has 3 captions") as exc:
        load_corpus(tiny_cub.config(captions_per_image=None))  # CUB default: 10
    assert str(tiny_cub.text_path("001.Alpha/Alpha_0001")) in str(exc.value)
    tiny_cub.text_path("002.Beta/Beta_0003").write_text("a blue bird\n\n?\nblue wings\n", encoding="utf-8")
    with pytest.raises(DataError, match="has 2 captions") as exc:
        load_corpus(tiny_cub.config())
    assert str(tiny_cub.text_path("002.Beta/Beta_0003")) in str(exc.value)


def test_missing_caption_file(tiny_cub):
    path = tiny_cub.text_path("003.Gamma/Gamma_0004")
    path.unlink()
    with pytest.raises(DataError, match="caption file not found") as exc:
        load_corpus(tiny_cub.config())
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_missing_filenames_pickle(tiny_cub, split):
    path = tiny_cub.root / split / "filenames.pickle"
    path.unlink()
    with pytest.raises(DataError) as exc:
        load_corpus(tiny_cub.config())
    assert str(path) in str(exc.value)


def test_filenames_pickle_not_a_list_of_keys(tiny_cub):
    path = tiny_cub.root / "train" / "filenames.pickle"
    write_pickle(path, {"a": 1})
    with pytest.raises(DataError, match="filenames.pickle"):
        load_corpus(tiny_cub.config())


def test_malicious_filenames_pickle_is_refused(tiny_cub, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tiny_cub.root / "train" / "filenames.pickle"
    path.write_bytes(pickle.dumps([Evil()], protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_corpus(tiny_cub.config())
    assert not marker.exists()


def test_dataset_root_not_found(tmp_path):
    root = tmp_path / "nowhere"
    for kind in ("cub", "coco", "flowers", "folder"):
        with pytest.raises(DataError, match="not found") as exc:
            load_corpus(DataConfig(kind=kind, root=str(root)))
        assert str(root) in str(exc.value)


def test_missing_bounding_boxes(tiny_cub):
    path = tiny_cub.root / "CUB_200_2011" / "bounding_boxes.txt"
    path.unlink()
    with pytest.raises(DataError) as exc:
        load_corpus(tiny_cub.config())
    assert str(path) in str(exc.value)


def test_non_numeric_box_row(tiny_cub):
    path = tiny_cub.root / "CUB_200_2011" / "bounding_boxes.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "3 10.0 x 5 5"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 3") as exc:
        load_corpus(tiny_cub.config())
    assert "bounding_boxes.txt" in str(exc.value)


def test_key_without_box(tiny_cub):
    images = tiny_cub.root / "CUB_200_2011" / "images.txt"
    boxes = tiny_cub.root / "CUB_200_2011" / "bounding_boxes.txt"
    # drop the row of 002.Beta/Beta_0003 (the first row) from both files
    images.write_text("".join(images.read_text().splitlines(keepends=True)[1:]))
    boxes.write_text("".join(boxes.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(DataError, match="no bounding box for 002.Beta/Beta_0003"):
        load_corpus(tiny_cub.config())


def test_class_info_length_mismatch(tiny_cub):
    path = tiny_cub.root / "test" / "class_info.pickle"
    write_pickle(path, [3])
    with pytest.raises(DataError, match="1 class ids") as exc:
        load_corpus(tiny_cub.config())
    assert str(path) in str(exc.value)


# -- COCO and flowers --------------------------------------------------------------------------------------------------

COCO_TRAIN = ["COCO_train2014_000000000009", "COCO_train2014_000000000025"]
COCO_TEST = ["COCO_val2014_000000000042"]
COCO_CAPTIONS = {
    "COCO_train2014_000000000009": ["A plate of food.", "Broccoli and rice", "a meal", "food on a plate", "a tray",
                                    "sixth caption ignored"],
    "COCO_train2014_000000000025": ["A giraffe", "a tall giraffe", "giraffe eating", "giraffe and tree", "a tree"],
    "COCO_val2014_000000000042": ["a dog", "a dog on a sofa", "dog", "a sleepy dog", "sofa"],
}


def _make_coco(root: Path, layout: str, images_dir: Path | None = None) -> dict[str, Path]:
    write_pickle(root / "train" / "filenames.pickle", COCO_TRAIN)
    write_pickle(root / "test" / "filenames.pickle", COCO_TEST)
    paths = {}
    for n, key in enumerate(COCO_TRAIN + COCO_TEST):
        (root / "text").mkdir(parents=True, exist_ok=True)
        (root / "text" / f"{key}.txt").write_text("\n".join(COCO_CAPTIONS[key]) + "\n", encoding="utf-8")
        base = images_dir if images_dir is not None else root / "images"
        sub = "train2014" if "train2014" in key else "val2014"
        path = base / sub / f"{key}.jpg" if layout == "split" else base / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        gradient_image(40 + 10 * n, 30, blue=n).save(path, format="JPEG")
        paths[key] = path
    return paths


@pytest.mark.parametrize("layout", ["split", "merged"])
def test_coco_layout(tmp_path, layout):
    root = tmp_path / "coco"
    paths = _make_coco(root, layout)
    corpus = load_corpus(DataConfig(kind="coco", root=str(root)))
    assert corpus.captions_per_image == 5
    train, test = corpus.records("train"), corpus.records("test")
    assert [r.key for r in train] == COCO_TRAIN and [r.key for r in test] == COCO_TEST
    assert all(r.path == paths[r.key] for r in train + test)
    assert all(len(r.captions) == 5 for r in train + test)
    assert all(r.bbox is None for r in train + test)
    # no class_info: every image is its own class
    assert [r.class_id for r in train] == [0, 1]
    assert len({r.class_id for r in train + test}) == 3
    assert "sixth" not in corpus.vocab and "ignored" not in corpus.vocab
    v = corpus.vocab
    assert train[0].captions[0] == [v.index("a"), v.index("plate"), v.index("of"), v.index("food")]
    assert v.words[:6] == ["<end>", "a", "plate", "of", "food", "broccoli"]
    ds = TextImageDataset(corpus, "test", image_size=16, train=False)
    assert ds[0]["image"].shape == (3, 16, 16)


def test_coco_images_dir(tmp_path):
    root = tmp_path / "coco"
    elsewhere = tmp_path / "elsewhere"
    paths = _make_coco(root, "split", images_dir=elsewhere)
    with pytest.raises(DataError, match="COCO_train2014_000000000009"):
        load_corpus(DataConfig(kind="coco", root=str(root)))
    corpus = load_corpus(DataConfig(kind="coco", root=str(root), images_dir=str(elsewhere)))
    assert [r.path for r in corpus.records("train")] == [paths[k] for k in COCO_TRAIN]


def test_coco_missing_image_skipped(tmp_path):
    root = tmp_path / "coco"
    paths = _make_coco(root, "merged")
    paths["COCO_train2014_000000000025"].unlink()
    with pytest.raises(DataError, match="COCO_train2014_000000000025"):
        load_corpus(DataConfig(kind="coco", root=str(root)))
    corpus = load_corpus(DataConfig(kind="coco", root=str(root), skip_bad_images=True))
    assert [r.key for r in corpus.records("train")] == ["COCO_train2014_000000000009"]
    assert [r.class_id for r in corpus.records("test")] == [2]
    assert corpus.info["missing_images"] == 1


def test_flowers_layout(tmp_path):
    root = tmp_path / "flowers"
    keys = {"train": ["class_00001/image_06734"], "test": ["class_00002/image_06735"]}
    for split, ks in keys.items():
        write_pickle(root / split / "filenames.pickle", ks)
        write_pickle(root / split / "class_info.pickle", [int(ks[0][6:11])])
        for k in ks:
            txt = root / "text" / f"{k}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text("".join(f"petal {i}\n" for i in range(10)), encoding="utf-8")
            img = root / "jpg" / f"{k.split('/')[1]}.jpg"
            img.parent.mkdir(parents=True, exist_ok=True)
            gradient_image(20, 20, blue=1).save(img)
    corpus = load_corpus(DataConfig(kind="flowers", root=str(root)))
    assert corpus.captions_per_image == 10
    rec = corpus.records("train")[0]
    assert rec.path == root / "jpg" / "image_06734.jpg"
    assert rec.class_id == 1 and corpus.records("test")[0].class_id == 2
    assert rec.bbox is None
    assert rec.captions[3] == [corpus.vocab.index("petal"), corpus.vocab.index("3")]


# -- TextImageDataset: words -----------------------------------------------------------------------------------------


def _is_ordered_subsequence(sub, seq):
    it = iter(seq)
    return all(any(x == y for y in it) for x in sub)


def test_train_long_caption_random_subset(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    ds = TextImageDataset(corpus, "train", image_size=32, words_num=5, train=True, caption_mode="first",
                          load_images=False)
    picks = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[1]  # Alpha_0002, first caption: w0..w24
        ids = item["caption"].tolist()
        assert item["length"] == 5 and len(ids) == 5
        assert _is_ordered_subsequence(ids, LONG_IDS)
        picks.add(tuple(ids))
        item0 = ds[0]  # 7 words
        assert item0["length"] == 5
        assert _is_ordered_subsequence(item0["caption"].tolist(), [1, 2, 3, 4, 5, 6, 7])
    assert len(picks) > 1  # the subset varies between epochs


def test_train_short_caption_padded_unchanged(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    ds = TextImageDataset(corpus, "train", image_size=32, words_num=5, train=True, caption_mode="all",
                          load_images=False)
    assert len(ds) == 9
    item = ds[2]  # image 0, caption 2: "the bird is small"
    assert (item["index"], item["caption_index"]) == (0, 2)
    assert item["caption"].tolist() == [11, 4, 12, 2, 0]
    assert item["length"] == 4
    item = ds[4]  # image 1, caption 1: "a caf bird"
    assert item["caption"].tolist() == [1, 38, 4, 0, 0]


def test_eval_keeps_first_words(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    ds = TextImageDataset(corpus, "train", image_size=32, words_num=5, train=False, caption_mode="first",
                          load_images=False)
    assert ds[1]["caption"].tolist() == [13, 14, 15, 16, 17]
    assert ds[0]["caption"].tolist() == [1, 2, 3, 4, 5]
    ds18 = TextImageDataset(corpus, "train", image_size=32, train=False, caption_mode="first", load_images=False)
    item = ds18[1]
    assert item["caption"].shape == (18,) and item["length"] == 18
    assert item["caption"].tolist() == list(range(13, 31))


def test_item_fields(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    ds = TextImageDataset(corpus, "test", image_size=32, train=False, caption_mode="first")
    item = ds[1]
    assert item["key"] == "003.Gamma/Gamma_0005"
    assert item["class_id"] == 3 and item["index"] == 1 and item["caption_index"] == 0
    assert item["caption"].dtype == torch.long
    assert item["caption"][:5].tolist() == [1, 43, 44, 4, 0]
    with pytest.raises(ValueError, match="caption_mode"):
        TextImageDataset(corpus, "test", image_size=32, caption_mode="every")


def test_random_caption_choice_covers_captions(tiny_cub):
    corpus = load_corpus(tiny_cub.config())
    ds = TextImageDataset(corpus, "train", image_size=32, train=True, load_images=False)
    seen = set()
    for epoch in range(30):
        ds.set_epoch(epoch)
        item = ds[0]
        seen.add(item["caption_index"])
        assert item["caption"][: item["length"]].tolist() == EXPECTED_TRAIN["001.Alpha/Alpha_0001"][
            item["caption_index"]]
    assert seen == {0, 1, 2}


# -- transforms -------------------------------------------------------------------------------------------------


def test_train_load_size():
    assert train_load_size(64) == 76
    assert train_load_size(256) == 304
    assert train_load_size(32) == 38


def test_to_tensor_range():
    img = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    t = to_tensor(img)
    assert t.shape == (3, 1, 1) and t.dtype == torch.float32
    assert t[:, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 51 / 127.5 - 1])


def _two_colour(width, height):
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


def test_eval_transform_centre_crop():
    # 100x50 -> shorter side 32 -> 64x32 -> centre crop (16, 0, 48, 32): half red, half blue
    out = eval_transform(_two_colour(100, 50), 32)
    assert out.size == (32, 32)
    arr = np.asarray(out).astype(int)
    assert arr[:, :14, 0].min() > 200 and arr[:, :14, 2].max() < 60
    assert arr[:, 18:, 2].min() > 200 and arr[:, 18:, 0].max() < 60


def test_train_transform_crops_and_flips():
    img = _two_colour(40, 40)  # -> 38x38, random 32x32 crop: column 0 is red unless flipped
    firsts = set()
    for seed in range(20):
        out = train_transform(img, 32, np.random.default_rng(seed))
        assert out.size == (32, 32)
        r, _, b = np.asarray(out)[16, 0].astype(int)
        firsts.add("red" if r > b else "blue")
    assert firsts == {"red", "blue"}


def _edge_marked(size):
    # a frame whose outermost columns carry their own colours (a beak at the border), grey inside
    arr = np.full((size, size, 3), 128, dtype=np.uint8)
    arr[:, :2] = (255, 0, 0)
    arr[:, -2:] = (0, 0, 255)
    return Image.fromarray(arr)


def test_train_transform_without_random_crop_keeps_the_whole_frame():
    img = _edge_marked(64)
    full = np.asarray(eval_transform(img, 64))
    flips = set()
    for seed in range(20):
        out = np.asarray(train_transform(img, 64, np.random.default_rng(seed), random_crop=False))
        flipped = bool(np.array_equal(out, full[:, ::-1]))
        assert flipped or np.array_equal(out, full)  # nothing cut or shifted, only mirrored
        flips.add(flipped)
    assert flips == {True, False}
    # the official transform loses both edge columns for about half of its crop offsets
    cut = sum(np.asarray(train_transform(img, 64, np.random.default_rng(seed)))[:, [0, -1], :].std() < 1
              for seed in range(20))
    assert cut > 0


def test_dataset_random_crop_option(tiny_cub):
    cfg = tiny_cub.config(random_crop=False)
    ds = TextImageDataset.from_config(cfg, "train")
    assert ds.random_crop is False and ds.with_mode(caption_mode="first", train=True).random_crop is False
    eval_ds = TextImageDataset.from_config(cfg, "train", train=False)
    for i in range(len(ds)):
        a, b = ds[i]["image"], eval_ds[i]["image"]
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))  # training differs from evaluation by a flip only
    assert TextImageDataset.from_config(tiny_cub.config(), "train").random_crop is True  # the default


@pytest.fixture
def tiny_cub_corpus(tiny_cub):
    return load_corpus(tiny_cub.config())


def test_train_items_shape_and_range(tiny_cub_corpus):
    ds = TextImageDataset(tiny_cub_corpus, "train", image_size=32, train=True)
    for i in range(len(ds)):
        img = ds[i]["image"]
        assert img.shape == (3, 32, 32) and img.dtype == torch.float32
        assert img.min() >= -1.0 and img.max() <= 1.0
        assert img.max() - img.min() > 0.1  # not a blank image


def test_eval_items_deterministic(tiny_cub_corpus):
    a = TextImageDataset(tiny_cub_corpus, "test", image_size=32, train=False)
    b = TextImageDataset(tiny_cub_corpus, "test", image_size=32, train=False)
    for i in range(len(a)):
        x, y, z = a[i], a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["image"], z["image"])
        assert torch.equal(x["caption"], z["caption"])
        assert x["image"].shape == (3, 32, 32)
    for epoch in range(1, 6):  # the epoch does not affect evaluation items (nor their caption choice)
        a.set_epoch(epoch)
        for i in range(len(a)):
            assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["caption"], b[i]["caption"])


def _same_item(x, y):
    return (torch.equal(x["image"], y["image"]) and torch.equal(x["caption"], y["caption"])
            and x["caption_index"] == y["caption_index"])


def test_train_items_deterministic_per_seed_epoch_index(tiny_cub_corpus):
    a = TextImageDataset(tiny_cub_corpus, "train", image_size=32, train=True, seed=1)
    b = TextImageDataset(tiny_cub_corpus, "train", image_size=32, train=True, seed=1)
    for i in range(len(a)):
        assert _same_item(a[i], a[i])
        assert _same_item(a[i], b[i])
    a.set_epoch(1)
    assert not all(_same_item(a[i], b[i]) for i in range(len(a)))
    b.set_epoch(1)
    assert all(_same_item(a[i], b[i]) for i in range(len(a)))
    c = TextImageDataset(tiny_cub_corpus, "train", image_size=32, train=True, seed=2)
    c.set_epoch(1)
    assert not all(_same_item(a[i], c[i]) for i in range(len(a)))


def test_items_independent_of_batching(tiny_cub_corpus):
    ds = TextImageDataset(tiny_cub_corpus, "train", image_size=32, train=True, caption_mode="all", seed=4)
    ds.set_epoch(3)
    alone = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0, collate_fn=collate_batch)
    n = 0
    for batch in loader:
        for j in range(len(batch["keys"])):
            ref = alone[n]
            assert torch.equal(batch["images"][j], ref["image"])
            assert int(batch["lengths"][j]) == ref["length"]
            assert torch.equal(batch["captions"][j][: ref["length"]], ref["caption"][: ref["length"]])
            n += 1
    assert n == len(ds) == 9
    # shuffled batches of another size hold the same items
    gen = torch.Generator().manual_seed(0)
    items = {(it["index"], it["caption_index"]): it for it in alone}
    for batch in make_loader(ds, 3, shuffle=True, drop_last=False, generator=gen):
        for j in range(len(batch["keys"])):
            ref = items[(int(batch["indices"][j]), int(batch["caption_indices"][j]))]
            assert torch.equal(batch["images"][j], ref["image"])
            assert batch["keys"][j] == ref["key"]


def test_from_config(tiny_cub):
    cfg = tiny_cub.config(image_size=16, words_num=4, seed=9)
    train = TextImageDataset.from_config(cfg, "train")
    test = TextImageDataset.from_config(cfg, "test", corpus=train.corpus)
    assert train.train is True and test.train is False
    assert train.words_num == 4 and train.seed == 9
    assert train[0]["image"].shape == (3, 16, 16)
    assert train[0]["caption"].shape == (4,)
    assert len(train.vocab) == 45


def test_long_caption_note_counts_captions_past_words_num(tiny_cub):
    train = TextImageDataset.from_config(tiny_cub.config(image_size=16, words_num=4), "train")
    lengths = [len(c) for r in train.records for c in r.captions if c]
    over, total, longest = train.long_captions()
    assert (over, total, longest) == (sum(n > 4 for n in lengths), len(lengths), max(lengths))
    assert 0 < over < total  # the fixture has captions on both sides of 4 words
    note = train.long_caption_note()
    assert f"{over} of {total} train captions" in note and "random subset" in note and "words_num=4" in note
    test = TextImageDataset.from_config(tiny_cub.config(image_size=16, words_num=4), "test", corpus=train.corpus)
    assert "cut to their first" in test.long_caption_note()
    whole = TextImageDataset.from_config(tiny_cub.config(image_size=16, words_num=longest), "train")
    assert whole.long_captions()[0] == 0 and whole.long_caption_note() is None


def test_trainers_log_one_line_per_split_with_long_captions(tiny_cub, caplog):
    from t2igan.training.logs import log_long_captions

    cut = TextImageDataset.from_config(tiny_cub.config(image_size=16, words_num=4), "train")
    whole = TextImageDataset.from_config(tiny_cub.config(image_size=16, words_num=cut.long_captions()[2]), "test")
    with caplog.at_level("INFO", logger="t2igan.training"):
        log_long_captions(cut, whole)
    assert [r.getMessage() for r in caplog.records] == [cut.long_caption_note()]


# -- collate -----------------------------------------------------------------------------------------------------


def _item(ids, words_num=6, key="k", index=0, with_image=True):
    cap = torch.zeros(words_num, dtype=torch.long)
    cap[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    it = {"caption": cap, "length": len(ids), "class_id": index + 10, "key": key, "index": index,
          "caption_index": index % 2}
    if with_image:
        it["image"] = torch.full((3, 4, 4), float(index))
    return it


def test_collate_pads_to_longest_in_batch():
    items = [_item([5, 6], key="a", index=0), _item([1, 2, 3, 4], key="b", index=1), _item([7, 8, 9], key="c",
                                                                                       index=2)]
    batch = collate_batch(items)
    assert batch["captions"].tolist() == [[5, 6, 0, 0], [1, 2, 3, 4], [7, 8, 9, 0]]
    assert batch["lengths"].tolist() == [2, 4, 3]
    assert batch["class_ids"].tolist() == [10, 11, 12]
    assert batch["keys"] == ["a", "b", "c"]
    assert batch["indices"].tolist() == [0, 1, 2]
    assert batch["caption_indices"].tolist() == [0, 1, 0]
    assert batch["images"].shape == (3, 3, 4, 4)
    assert batch["images"][2].unique().tolist() == [2.0]


def test_collate_without_images_and_empty_captions():
    batch = collate_batch([_item([], with_image=False), _item([], with_image=False)])
    assert "images" not in batch
    assert batch["captions"].shape == (2, 1)
    assert batch["captions"].tolist() == [[0], [0]]
    with pytest.raises(ValueError):
        collate_batch([])


def test_sort_by_length_hand_case():
    lengths = torch.tensor([3, 5, 5, 1, 3])
    order, restore = sort_by_length(lengths)
    assert order.tolist() == [1, 2, 0, 4, 3]  # descending, ties keep their original order
    assert restore.tolist() == [2, 0, 1, 4, 3]
    x = torch.tensor([10, 11, 12, 13, 14])
    assert x[order].tolist() == [11, 12, 10, 14, 13]
    assert torch.equal(x[order][restore], x)


def test_sort_by_length_random_with_ties():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 5, (50,), generator=gen)
    order, restore = sort_by_length(lengths)
    sorted_lengths = lengths[order]
    assert all(sorted_lengths[i] >= sorted_lengths[i + 1] for i in range(49))
    for i in range(49):  # stable: among equal lengths, original positions increase
        if sorted_lengths[i] == sorted_lengths[i + 1]:
            assert order[i] < order[i + 1]
    x = torch.randn(50, 3, generator=gen)
    assert torch.equal(x[order][restore], x)
    assert torch.equal(order[restore], torch.arange(50))


# -- folder datasets -------------------------------------------------------------------------------------------------


def _folder(root: Path, files: dict[str, str | None]) -> None:
    """Create images (keys with an image extension) and text files (other keys); None: image only."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".jpg", ".png"):
            gradient_image(20, 16, blue=len(rel)).save(path)
            if text is not None:
                path.with_suffix(".txt").write_text(text, encoding="utf-8")
        else:
            path.write_text(text or "", encoding="utf-8")


def test_folder_lists_classes_and_vocab(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {
        "sparrow/a.jpg": "a brown sparrow\n\nsmall bird!\n",
        "sparrow/b.png": "a sparrow",
        "robin/c.jpg": "A red robin",
        "robin/d.jpg": "robin redbreast",
        "loose.jpg": "just a bird",
        "train.txt": "sparrow/a.jpg\nrobin/c\nsparrow/b.png\nloose.jpg\n",
        "test.txt": "robin/d.jpg\n",
    })
    corpus = load_corpus(DataConfig(kind="folder", root=str(root)))
    train, test = corpus.records("train"), corpus.records("test")
    assert [r.key for r in train] == ["sparrow/a", "robin/c", "sparrow/b", "loose"]
    assert [r.key for r in test] == ["robin/d"]
    # the first folder is the class; an image at the root is its own class
    assert [r.class_id for r in train] == [0, 1, 0, 2]
    assert [r.class_id for r in test] == [1]
    assert corpus.vocab.words == ["<end>", "a", "brown", "sparrow", "small", "bird", "red", "robin", "just",
                                  "redbreast"]
    assert train[0].captions == [[1, 2, 3], [4, 5]]
    assert train[0].path == root / "sparrow" / "a.jpg"
    assert train[2].path == root / "sparrow" / "b.png"
    assert corpus.info["split_source"] == "train.txt/test.txt"
    assert corpus.info["captions_source"] == "<image>.txt files"


def test_folder_test_list_only(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": "x", "b.jpg": "y", "c.jpg": "z", "test.txt": "b\n"})
    corpus = load_corpus(DataConfig(kind="folder", root=str(root)))
    assert [r.key for r in corpus.records("train")] == ["a", "c"]
    assert [r.key for r in corpus.records("test")] == ["b"]


def test_folder_list_names_unknown_image(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": "x", "train.txt": "a\nghost.jpg\n"})
    with pytest.raises(DataError, match="ghost") as exc:
        load_corpus(DataConfig(kind="folder", root=str(root)))
    assert str(root / "train.txt") in str(exc.value)


def test_folder_captions_jsonl(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"sparrow/a.jpg": None, "robin/c.jpg": None, "d.png": None})
    lines = [
        {"image": "sparrow/a.jpg", "caption": "a brown sparrow"},
        {"image": "robin/c.jpg", "captions": ["a red robin", "robin on a branch"]},
        {"image": "sparrow/a.jpg", "captions": ["small bird"]},
        {"image": "d.png", "caption": "a duck"},
    ]
    text = "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + "\n".join(json.dumps(x) for x in lines[2:]) + "\n"
    (root / "captions.jsonl").write_text(text, encoding="utf-8")
    corpus = load_corpus(DataConfig(kind="folder", root=str(root), test_fraction=0.0))
    assert corpus.records("test") == []
    recs = {r.key: r for r in corpus.records("train")}
    assert set(recs) == {"sparrow/a", "robin/c", "d"}
    v = corpus.vocab
    assert [[v.word(i) for i in c] for c in recs["sparrow/a"].captions] == [["a", "brown", "sparrow"],
                                                                            ["small", "bird"]]
    assert [[v.word(i) for i in c] for c in recs["robin/c"].captions] == [["a", "red", "robin"],
                                                                          ["robin", "on", "a", "branch"]]
    assert recs["d"].path == root / "d.png"
    assert corpus.info["captions_source"] == str(root / "captions.jsonl")


def test_folder_jsonl_invalid_line(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": None})
    jsonl = root / "captions.jsonl"
    jsonl.write_text('{"image": "a.jpg", "caption": "x"}\n\n{"image": "a.jpg", "caption": \n', encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON") as exc:
        load_corpus(DataConfig(kind="folder", root=str(root)))
    assert f"{jsonl}:3" in str(exc.value)
    jsonl.write_text('{"image": "a.jpg", "caption": "x"}\n{"caption": "no image"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="'image'") as exc:
        load_corpus(DataConfig(kind="folder", root=str(root)))
    assert f"{jsonl}:2" in str(exc.value)
    jsonl.write_text('{"image": "a.jpg", "captions": [1, 2]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=":1:"):
        load_corpus(DataConfig(kind="folder", root=str(root)))
    jsonl.write_text('{"image": "a.jpg", "caption": "x"}\n{"image": "zz/b.jpg", "caption": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="zz/b"):
        load_corpus(DataConfig(kind="folder", root=str(root)))


def test_folder_image_without_captions(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": "a bird", "birds/b.jpg": None, "c.jpg": "\n  \n...\n"})
    with pytest.raises(DataError, match="no caption") as exc:
        load_corpus(DataConfig(kind="folder", root=str(root)))
    assert str(root / "birds" / "b.jpg") in str(exc.value)
    assert "2 images" in str(exc.value)  # c.jpg has a caption file but no word in it
    corpus = load_corpus(DataConfig(kind="folder", root=str(root), skip_bad_images=True, test_fraction=0.0))
    assert [r.key for r in corpus.records("train")] == ["a"]
    assert corpus.info["images_without_captions"] == 2


def test_folder_captions_per_image(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": "one\ntwo\nthree\n", "b.jpg": "only one\n"})
    corpus = load_corpus(DataConfig(kind="folder", root=str(root), captions_per_image=1, test_fraction=0.0))
    assert {r.key: len(r.captions) for r in corpus.records("train")} == {"a": 1, "b": 1}
    with pytest.raises(DataError, match="has 1 captions") as exc:
        load_corpus(DataConfig(kind="folder", root=str(root), captions_per_image=2))
    assert str(root / "b.txt") in str(exc.value)


def test_folder_vocab_json_is_used(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": "a red bird", "b.jpg": "a blue bird"})
    Vocabulary(["<end>", "bird", "blue"]).save(root / "vocab.json")
    corpus = load_corpus(DataConfig(kind="folder", root=str(root), test_fraction=0.0))
    assert corpus.vocab.words == ["<end>", "bird", "blue"]
    assert {r.key: r.captions for r in corpus.records("train")} == {"a": [[1]], "b": [[2, 1]]}


def test_folder_no_images(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"notes.txt": "hello"})
    with pytest.raises(DataError, match="no images"):
        load_corpus(DataConfig(kind="folder", root=str(root)))


def _split(root, **kw):
    corpus = load_corpus(DataConfig(kind="folder", root=str(root), **kw))
    return [r.key for r in corpus.records("train")], [r.key for r in corpus.records("test")]


def test_folder_hash_split_is_deterministic_and_stable(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {f"img{i:02d}.jpg": f"bird number {i}" for i in range(20)})
    train, test = _split(root, test_fraction=0.5)
    assert train and test
    assert sorted(train + test) == [f"img{i:02d}" for i in range(20)]
    assert not set(train) & set(test)
    assert _split(root, test_fraction=0.5) == (train, test)  # same split twice
    # new images never move existing ones between splits
    _folder(root, {f"new{i}.jpg": "another bird" for i in range(5)})
    train2, test2 = _split(root, test_fraction=0.5)
    assert set(train) <= set(train2) and set(test) <= set(test2)
    assert len(train2) + len(test2) == 25
    # the split seed matters; fraction 0 holds nothing out
    assert _split(root, test_fraction=0.5, split_seed=1) != (train2, test2)
    assert _split(root, test_fraction=0.0)[1] == []


def test_folder_corrupt_image_skipped_by_dataset(tmp_path):
    root = tmp_path / "mine"
    _folder(root, {"a.jpg": "a bird", "b.jpg": "b bird"})
    (root / "b.jpg").write_bytes(b"\x00" * 50)
    cfg = DataConfig(kind="folder", root=str(root), test_fraction=0.0, image_size=16)
    ds = TextImageDataset.from_config(cfg, "train", train=False)
    with pytest.raises(DataError) as exc:
        ds[1]
    assert str(root / "b.jpg") in str(exc.value)
    ds = TextImageDataset.from_config(cfg.replace(skip_bad_images=True), "train")
    assert len(ds) == 1 and len(ds.skipped) == 1 and ds.skipped[0][0] == str(root / "b.jpg")


def test_prepare_warns_about_an_unusable_test_split(tmp_path, capsys):
    from t2igan.cli import main

    root = tmp_path / "mine"
    _folder(root, {"sparrow/a.jpg": "a sparrow", "sparrow/b.jpg": "a small sparrow", "robin/c.jpg": "a robin",
                   "robin/d.jpg": "a red robin", "train.txt": "sparrow/a\nrobin/c\nrobin/d\n",
                   "test.txt": "sparrow/b\n"})
    assert main(["prepare", "folder", "--root", str(root)]) == 0
    err = capsys.readouterr().err
    assert "single class" in err and "R-precision" in err
    (root / "test.txt").write_text("sparrow/b\nrobin/d\n")
    (root / "train.txt").write_text("sparrow/a\nrobin/c\n")
    assert main(["prepare", "folder", "--root", str(root)]) == 0
    assert "warning" not in capsys.readouterr().err
