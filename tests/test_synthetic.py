"""SynthBirds: deterministic rendering, caption ground truth, species split, and reading it as CUB."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import t2igan.data.synthetic as synthetic
from t2igan.data import DataConfig, TextImageDataset, load_corpus
from t2igan.data.base import load_image
from t2igan.data.synthetic import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    BEAK_LENGTH_WORDS,
    COLOR_ATTRIBUTES,
    COLOR_WORDS,
    SIZE_WORDS,
    SynthBirdsSpec,
    prepare_synthbirds,
    read_attributes,
    species_split,
    write_captions,
)
from t2igan.text.vocab import tokenize

COLOR_NAMES = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey",
               "teal"]
COLOR_OF_WORD = {w: c for c, words in COLOR_WORDS.items() for w in words}
SIZE_OF_WORD = {w: s for s, words in SIZE_WORDS.items() for w in words}
BEAK_OF_WORD = {w: b for b, words in BEAK_LENGTH_WORDS.items() for w in words}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


# -- constants ---------------------------------------------------------------------------------------------------


def test_attribute_tables():
    assert ATTRIBUTES == ("size", "body_color", "crown_color", "breast_color", "wing_color", "tail_color",
                          "beak_color", "beak_length")
    assert ATTRIBUTE_VALUES["size"] == ("small", "large")
    assert ATTRIBUTE_VALUES["beak_length"] == ("short", "long")
    assert all(list(ATTRIBUTE_VALUES[a]) == COLOR_NAMES for a in COLOR_ATTRIBUTES)
    assert set(COLOR_WORDS) == set(COLOR_NAMES) and COLOR_WORDS["grey"] == ("grey", "gray")
    # the value words of different values never overlap
    assert len(COLOR_OF_WORD) == 13 and len(SIZE_OF_WORD) == 6 and len(BEAK_OF_WORD) == 6
    assert not (set(COLOR_OF_WORD) & set(SIZE_OF_WORD) or set(COLOR_OF_WORD) & set(BEAK_OF_WORD)
                or set(SIZE_OF_WORD) & set(BEAK_OF_WORD))


# -- determinism ---------------------------------------------------------------------------------------------------


def test_same_spec_renders_byte_identical(synthbirds_small, tmp_path):
    again = tmp_path / "again"
    prepare_synthbirds(again, synthbirds_small.spec, workers=1, progress=False)
    a, b = _tree(synthbirds_small.root), _tree(again)
    n = synthbirds_small.spec.train + synthbirds_small.spec.test
    assert sum(k.endswith(".jpg") for k in a) == n
    assert sum(k.startswith("text/") for k in a) == n
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_worker_count_does_not_change_files(tmp_path, monkeypatch):
    spec = SynthBirdsSpec(size=32, train=80, test=20, seed=5)
    contexts = []
    real = synthetic.mp.get_context

    def spy(*args, **kwargs):
        contexts.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic.mp, "get_context", spy)
    prepare_synthbirds(tmp_path / "one", spec, workers=1, progress=False)
    assert contexts == []
    prepare_synthbirds(tmp_path / "two", spec, workers=2, progress=False)
    assert len(contexts) == 1  # 100 jobs >= 64: the pool was used
    a, b = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert len(a) > 200 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_pool_only_from_64_jobs(monkeypatch):
    contexts = []
    real = synthetic.mp.get_context

    def spy(*args, **kwargs):
        contexts.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic.mp, "get_context", spy)
    small = SynthBirdsSpec(size=16, train=50, test=13, seed=1)  # 63 jobs
    serial = list(synthetic._rendered(small, 2))
    assert contexts == [] and len(serial) == 63
    big = SynthBirdsSpec(size=16, train=50, test=14, seed=1)  # 64 jobs
    pooled = list(synthetic._rendered(big, 2))
    assert len(contexts) == 1 and len(pooled) == 64
    # the first 63 images depend neither on the plan's length nor on the pool
    assert pooled[:63] == serial


def test_write_captions_deterministic_and_covering():
    attrs = {"size": "small", "body_color": "grey", "crown_color": "red", "breast_color": "yellow",
             "wing_color": "blue", "tail_color": "black", "beak_color": "orange", "beak_length": "long"}
    a = write_captions(attrs, np.random.default_rng(11), 10)
    b = write_captions(attrs, np.random.default_rng(11), 10)
    assert a == b and len(a) == 10
    for n in (1, 3, 10):
        caps = write_captions(attrs, np.random.default_rng(n), n)
        assert len(caps) == n
        assert set().union(*(c["mentions"] for c in caps)) == set(ATTRIBUTES)


# -- ground truth ----------------------------------------------------------------------------------------------------


def test_captions_agree_with_attributes(synthbirds_small):
    root = synthbirds_small.root
    records = read_attributes(root)
    assert len(records) == synthbirds_small.spec.train + synthbirds_small.spec.test
    for key, rec in records.items():
        attrs = rec["attributes"]
        assert set(attrs) == set(ATTRIBUTES)
        assert all(attrs[a] in ATTRIBUTE_VALUES[a] for a in ATTRIBUTES)
        captions = rec["captions"]
        assert len(captions) == synthbirds_small.spec.captions_per_image == 10
        lines = (root / "text" / f"{key}.txt").read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "" and lines[:-1] == [c["text"] for c in captions]
        mentioned = set()
        for cap in captions:
            tokens = tokenize(cap["text"])
            mentions = cap["mentions"]
            mentioned |= set(mentions)
            for a in mentions:
                value = attrs[a]
                if a in COLOR_ATTRIBUTES:
                    words = COLOR_WORDS[value]
                elif a == "size":
                    words = SIZE_WORDS[value]
                else:
                    words = BEAK_LENGTH_WORDS[value]
                assert any(w in tokens for w in words), (key, cap["text"], a, value)
            colours = {attrs[a] for a in mentions if a in COLOR_ATTRIBUTES}
            for t in tokens:
                if t in COLOR_OF_WORD:
                    assert COLOR_OF_WORD[t] in colours, (key, cap["text"], t)
                if t in SIZE_OF_WORD:
                    assert "size" in mentions and SIZE_OF_WORD[t] == attrs["size"], (key, cap["text"], t)
                if t in BEAK_OF_WORD:
                    assert "beak_length" in mentions and BEAK_OF_WORD[t] == attrs["beak_length"], (key, t)
        assert mentioned == set(ATTRIBUTES), key


def test_scene_and_box_recorded(synthbirds_small):
    size = synthbirds_small.spec.size
    for rec in read_attributes(synthbirds_small.root).values():
        x, y, w, h = rec["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= size + 0.05 and y + h <= size + 0.05
        assert rec["scene"]["background"] in ("sky", "foliage", "plain")
        assert rec["scene"]["facing"] in ("left", "right")


def test_cub_metadata_files(synthbirds_small):
    root = synthbirds_small.root
    records = list(read_attributes(root).values())
    n = len(records)
    images = (root / "CUB_200_2011" / "images.txt").read_text().splitlines()
    boxes = (root / "CUB_200_2011" / "bounding_boxes.txt").read_text().splitlines()
    assert images == [f"{i} {r['key']}.jpg" for i, r in enumerate(records, 1)]
    assert len(boxes) == n
    assert [float(v) for v in boxes[0].split()[1:]] == records[0]["bbox"]
    assert len((root / "CUB_200_2011" / "classes.txt").read_text().splitlines()) == 144
    manifest = json.loads((root / "synthbirds.json").read_text())
    assert manifest["spec"] == asdict(synthbirds_small.spec)
    assert manifest["images"] == {"train": 60, "test": 20}
    assert manifest == synthbirds_small.manifest
    for r in records:
        with Image.open(root / "CUB_200_2011" / "images" / f"{r['key']}.jpg") as im:
            assert im.size == (64, 64) and im.mode == "RGB"


# -- species ------------------------------------------------------------------------------------------------------


def test_class_info_matches_species(synthbirds_small):
    root = synthbirds_small.root
    records = read_attributes(root)
    id_of_species: dict[tuple[str, str], int] = {}
    species_of_id: dict[int, tuple[str, str]] = {}
    species = {}
    for split in ("train", "test"):
        keys = _load(root / split / "filenames.pickle")
        ids = _load(root / split / "class_info.pickle")
        assert len(keys) == len(ids) == (60 if split == "train" else 20)
        assert all(records[k]["split"] == split for k in keys)
        species[split] = set()
        for key, cid in zip(keys, ids):
            attrs = records[key]["attributes"]
            pair = (attrs["breast_color"], attrs["wing_color"])
            species[split].add(pair)
            assert records[key]["class_id"] == cid
            assert id_of_species.setdefault(pair, cid) == cid  # one id per species ...
            assert species_of_id.setdefault(cid, pair) == pair  # ... and one species per id
            assert key.startswith(f"{cid:03d}.")
            assert f"{pair[0].capitalize()}_breasted_{pair[1].capitalize()}_winged_Bird" in key
    assert not species["train"] & species["test"]  # class-disjoint split
    train_sp, test_sp = species_split(3, 3)
    assert species["train"] <= set(train_sp) and species["test"] <= set(test_sp)


def test_species_split():
    train, test = species_split(3, 3)
    assert len(train) == 108 and len(test) == 36
    assert not set(train) & set(test)
    assert set(train) | set(test) == {(b, w) for b in COLOR_NAMES for w in COLOR_NAMES}
    # every breast colour and every wing colour occurs in training
    assert {b for b, _ in train} == set(COLOR_NAMES)
    assert {w for _, w in train} == set(COLOR_NAMES)
    # each breast and each wing colour has exactly 3 unseen partners
    assert all(sum(b == c for b, _ in test) == 3 for c in COLOR_NAMES)
    assert all(sum(w == c for _, w in test) == 3 for c in COLOR_NAMES)
    assert species_split(3, 3) == (train, test)
    assert len({tuple(species_split(s, 3)[1]) for s in range(5)}) > 1
    assert species_split(0, 0)[1] == []
    for bad in (-1, 12):
        with pytest.raises(ValueError):
            species_split(0, bad)


def test_small_render_test_colours_seen_in_training(tmp_path):
    root = tmp_path / "sb"
    prepare_synthbirds(root, SynthBirdsSpec(size=16, train=20, test=20, seed=0), workers=1, progress=False)
    records = read_attributes(root).values()
    train_breasts = {r["attributes"]["breast_color"] for r in records if r["split"] == "train"}
    test_breasts = {r["attributes"]["breast_color"] for r in records if r["split"] == "test"}
    assert test_breasts <= train_breasts


# -- reading SynthBirds through the CUB code path -----------------------------------------------------------------


def _expected_crop_size(bbox, width, height):
    # the official CUB rule, written out: half-side r = int(0.75 * max(w, h)) around the truncated centre
    x, y, w, h = bbox
    r = int(0.75 * max(w, h))
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return min(width, cx + r) - max(0, cx - r), min(height, cy + r) - max(0, cy - r)


@pytest.mark.parametrize("kind", ["synthbirds", "cub"])
def test_loads_as_cub(synthbirds_small, kind):
    root = synthbirds_small.root
    corpus = load_corpus(DataConfig(kind=kind, root=str(root), image_size=64))
    assert corpus.name == kind
    assert corpus.captions_per_image == 10
    assert corpus.info["captions_source"] == str(root / "captions.pickle")
    official = _load(root / "captions.pickle")
    assert len(corpus.vocab) == len(official[2]) == len(official[3])
    assert corpus.vocab.ixtoword == official[2]
    records = read_attributes(root)
    cropped = 0
    for split in ("train", "test"):
        recs = corpus.records(split)
        assert [r.key for r in recs] == _load(root / split / "filenames.pickle")
        assert [r.class_id for r in recs] == _load(root / split / "class_info.pickle")
        for r in recs:
            gt = records[r.key]
            assert r.bbox == tuple(float(int(v)) for v in gt["bbox"])
            # the pickled captions are the tokenized caption texts
            assert [corpus.vocab.decode(c) for c in r.captions] == [" ".join(tokenize(c["text"]))
                                                                    for c in gt["captions"]]
            size = load_image(r.path, r.bbox).size
            assert size == _expected_crop_size(r.bbox, 64, 64)
            cropped += size != (64, 64)
    assert cropped > 0  # the box crop is applied
    for split in ("train", "test"):
        ds = TextImageDataset.from_config(DataConfig(kind=kind, root=str(root), image_size=64), split, corpus=corpus)
        item = ds[0]
        assert item["image"].shape == (3, 64, 64)
        assert -1.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
        assert item["caption"].shape == (18,)


# -- prepare_synthbirds on existing directories ---------------------------------------------------------------------


def test_prepare_same_spec_is_a_noop(synthbirds_small):
    before = _mtimes(synthbirds_small.root)
    manifest = prepare_synthbirds(synthbirds_small.root, synthbirds_small.spec, workers=1, progress=False)
    assert manifest == synthbirds_small.manifest
    assert _mtimes(synthbirds_small.root) == before


def test_prepare_other_spec_refused_without_overwrite(synthbirds_small):
    before = _mtimes(synthbirds_small.root)
    other = SynthBirdsSpec(size=64, train=60, test=20, seed=4)
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_synthbirds(synthbirds_small.root, other, workers=1, progress=False)
    assert _mtimes(synthbirds_small.root) == before


def test_prepare_overwrite_replaces_synthbirds(tmp_path):
    root = tmp_path / "sb"
    prepare_synthbirds(root, SynthBirdsSpec(size=16, train=4, test=2, seed=0), workers=1, progress=False)
    new = SynthBirdsSpec(size=16, train=3, test=1, seed=1)
    manifest = prepare_synthbirds(root, new, overwrite=True, workers=1, progress=False)
    assert manifest["spec"] == asdict(new)
    assert len(list((root / "CUB_200_2011" / "images").rglob("*.jpg"))) == 4
    assert len(_load(root / "train" / "filenames.pickle")) == 3
    assert not (tmp_path / "sb.partial").exists()


def test_prepare_into_empty_dir(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    prepare_synthbirds(root, SynthBirdsSpec(size=16, train=2, test=1, seed=0), workers=1, progress=False)
    assert (root / "synthbirds.json").is_file() and (root / "captions.pickle").is_file()


def test_prepare_never_deletes_other_directories(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("precious", encoding="utf-8")
    (root / "photos").mkdir()
    (root / "photos" / "a.jpg").write_bytes(b"jpeg")
    spec = SynthBirdsSpec(size=16, train=2, test=1, seed=0)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError):
            prepare_synthbirds(root, spec, overwrite=overwrite, workers=1, progress=False)
        assert (root / "notes.txt").read_text(encoding="utf-8") == "precious"
        assert (root / "photos" / "a.jpg").read_bytes() == b"jpeg"


def test_prepare_never_deletes_a_real_cub_dataset(tiny_cub):
    spec = SynthBirdsSpec(size=16, train=2, test=1, seed=0)
    image = tiny_cub.image_path("001.Alpha/Alpha_0001")
    try:
        with pytest.raises(FileExistsError):
            prepare_synthbirds(tiny_cub.root, spec, overwrite=True, workers=1, progress=False)
    finally:
        assert image.is_file(), "the CUB dataset was deleted"


def test_prepare_bad_spec_keeps_existing_dataset(tmp_path):
    root = tmp_path / "sb"
    prepare_synthbirds(root, SynthBirdsSpec(size=16, train=2, test=1, seed=0), workers=1, progress=False)
    with pytest.raises(ValueError):
        prepare_synthbirds(root, SynthBirdsSpec(size=8, train=2, test=1), overwrite=True, workers=1, progress=False)
    assert (root / "synthbirds.json").is_file()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (SynthBirdsSpec(size=8, train=2, test=1), "at least 16"),
        (SynthBirdsSpec(size=16, train=0, test=1), "training image"),
        (SynthBirdsSpec(size=16, train=2, test=1, test_wings_per_breast=0), "test species"),
    ],
)
def test_prepare_rejects_bad_specs(tmp_path, spec, match):
    root = tmp_path / "sb"
    with pytest.raises(ValueError, match=match):
        prepare_synthbirds(root, spec, workers=1, progress=False)
    assert not root.exists() or not any(root.iterdir())


def test_read_attributes_needs_synthbirds(tmp_path):
    with pytest.raises(FileNotFoundError, match="attributes.jsonl"):
        read_attributes(tmp_path)


def test_partial_directory_is_not_left_behind(tmp_path, monkeypatch):
    root = tmp_path / "sb"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_metadata", boom)
    with pytest.raises(RuntimeError):
        prepare_synthbirds(root, SynthBirdsSpec(size=16, train=2, test=1), workers=1, progress=False)
    assert not root.exists()  # an interrupted render never looks like a dataset
    monkeypatch.undo()
    prepare_synthbirds(root, SynthBirdsSpec(size=16, train=2, test=1), workers=1, progress=False)
    assert (root / "synthbirds.json").is_file()
    assert not (tmp_path / "sb.partial").exists()  # the stale partial render was cleared
