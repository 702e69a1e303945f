"""Attribute accuracy and FID-SB on SynthBirds: scoring by hand, the classifier, its fingerprint, training."""

from __future__ import annotations

import colorsys
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from t2igan.data.synthetic import ATTRIBUTES, read_attributes
from t2igan.evaluation.attributes import (
    FID_SB_EXTRACTOR,
    AttributeClassifier,
    AttributeClassifierConfig,
    AttributeFeatureExtractor,
    AttributeScorer,
    FingerprintMismatchError,
    attribute_accuracy,
    caption_targets,
    ceiling_accuracy,
    fid_sb,
    load_attribute_classifier,
    load_synthbirds_split,
    reference_statistics,
    synthbirds_fingerprint,
)
from t2igan.evaluation.base import METRICS
from t2igan.evaluation.features import EXTRACTORS
from t2igan.training.evaluator import (
    AugmentConfig,
    EvaluatorTrainConfig,
    _lr_factor,
    augment_batch,
    train_evaluator,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = {"size": ("small", "large"), "color": ("red", "blue", "green")}


class StubClassifier(nn.Module):
    """Predicts what the image says: pixel (channel 0, row 0, column j) is the value index of attribute j."""

    def __init__(self, attributes=TABLE) -> None:
        super().__init__()
        self.attributes = {a: tuple(v) for a, v in attributes.items()}
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the scorer a device

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for j, (a, values) in enumerate(self.attributes.items()):
            idx = images[:, 0, 0, j].round().long()
            out[a] = nn.functional.one_hot(idx, len(values)).float()
        return out


def images_predicting(preds: list[dict[str, int]], attributes=TABLE) -> torch.Tensor:
    x = torch.zeros(len(preds), 3, 4, 4)
    for i, p in enumerate(preds):
        for j, a in enumerate(attributes):
            x[i, 0, 0, j] = p[a]
    return x


# Four generated images: truth of the image whose caption was used, the caption's mentions, the prediction.
#   0: size right (mentioned), colour wrong (not mentioned)            -> size 1/1
#   1: size wrong, colour right, both mentioned                         -> size 1/2, colour 1/1
#   2: size wrong (NOT mentioned), colour wrong (mentioned)             -> colour 1/2
#   3: colour right (mentioned), nothing else                           -> colour 2/3
TRUTHS = [{"size": "small", "color": "red"}, {"size": "large", "color": "blue"},
          {"size": "small", "color": "green"}, {"size": "large", "color": "green"}]
MENTIONS = [["size"], ["size", "color"], ["color"], ["color"]]
PREDS = [{"size": 0, "color": 1}, {"size": 0, "color": 1}, {"size": 1, "color": 0}, {"size": 1, "color": 2}]


# -- scoring -------------------------------------------------------------------------------------------------
def test_scoring_counts_only_mentioned_attributes():
    res = attribute_accuracy(StubClassifier(), images_predicting(PREDS), TRUTHS, MENTIONS, batch_size=3)
    assert res.counts == {"size": 2, "color": 3}
    assert res.correct == {"size": 1, "color": 2}
    assert res.per_attribute == pytest.approx({"size": 0.5, "color": 2 / 3})
    assert res.total == 5
    assert res.overall == pytest.approx(3 / 5)  # micro over all mentioned instances
    assert res.macro == pytest.approx((0.5 + 2 / 3) / 2)
    d = res.as_dict()
    assert d["attr_acc"] == pytest.approx(0.6) and d["attr_acc_count"] == 5
    assert d["attr_acc_size"] == pytest.approx(0.5) and d["attr_acc_color"] == pytest.approx(2 / 3)
    assert d["attr_acc_macro"] == pytest.approx(res.macro) and d["attr_acc_count_color"] == 3
    assert METRICS.get("attributes") is attribute_accuracy


def test_scoring_accepts_value_indices_and_skips_unmentioned_attributes():
    truths = [{"size": 1, "color": 2}, {"size": 0}]  # indices; image 1 has neither colour truth nor mention
    scorer = AttributeScorer(TABLE)
    scorer.update_predictions({"size": torch.tensor([1, 1]), "color": torch.tensor([2, 0])}, truths,
                              [["size", "color"], ["size"]])
    res = scorer.result()
    assert res.counts == {"size": 2, "color": 1} and res.correct == {"size": 1, "color": 1}
    only_size = AttributeScorer(TABLE)
    only_size.update_predictions({"size": torch.tensor([0]), "color": torch.tensor([0])}, [TRUTHS[0]],
                                 [["size"]])
    r = only_size.result()
    assert math.isnan(r.per_attribute["color"])  # never mentioned: NaN, left out of the macro mean
    assert r.macro == 1.0 and r.overall == 1.0
    assert math.isnan(AttributeScorer(TABLE).result().overall)


def test_scoring_errors_name_the_problem():
    scorer = AttributeScorer(TABLE)
    pred = {"size": torch.tensor([0]), "color": torch.tensor([0])}
    with pytest.raises(ValueError, match="unknown attribute 'wings'"):
        scorer.update_predictions(pred, [TRUTHS[0]], [["wings"]])
    with pytest.raises(ValueError, match="'color' has value 'purple'"):
        scorer.update_predictions(pred, [{"color": "purple"}], [["color"]])
    with pytest.raises(ValueError, match="no value for it"):
        scorer.update_predictions(pred, [{"size": "small"}], [["color"]])
    assert scorer.result().total == 0  # nothing half-counted


def test_counts_merge_two_halves_equal_one_update():
    full = AttributeScorer.for_classifier(StubClassifier())
    full.update(images_predicting(PREDS), TRUTHS, MENTIONS)
    a, b = AttributeScorer.for_classifier(StubClassifier()), AttributeScorer.for_classifier(StubClassifier())
    a.update(images_predicting(PREDS[:2]), TRUTHS[:2], MENTIONS[:2])
    b.update(images_predicting(PREDS[2:]), TRUTHS[2:], MENTIONS[2:])
    assert torch.equal(a.merge(b).counts, full.counts)
    assert a.result() == full.result()
    c = AttributeScorer(TABLE)
    c.add_counts(full.counts)
    c.all_reduce()  # one process: a no-op
    assert c.result() == full.result()


def test_caption_targets_from_records(synthbirds_small):
    records = read_attributes(synthbirds_small.root)
    key = next(iter(records))
    truths, mentions = caption_targets(records, [key, key], torch.tensor([0, 3]))
    assert truths[0] == records[key]["attributes"]
    assert mentions == [records[key]["captions"][0]["mentions"], records[key]["captions"][3]["mentions"]]
    with pytest.raises(IndexError, match="caption index 10"):
        caption_targets(records, [key], [10])
    with pytest.raises(KeyError, match="nope"):
        caption_targets(records, ["nope"], [0])


def test_ceiling_weights_attributes_by_caption_mentions(synthbirds_small):
    """A classifier always answering the first value scores the share of mentions whose truth it is."""
    data = load_synthbirds_split(synthbirds_small.root, "test", 64)
    records = read_attributes(synthbirds_small.root)
    stub = StubClassifier(AttributeClassifierConfig().attributes)
    data.images = torch.zeros_like(data.images)  # pixel value 0 -> value index 0 for every attribute
    res = ceiling_accuracy(stub, data=data)
    tests = [r for r in records.values() if r["split"] == "test"]
    for a in ATTRIBUTES:
        first = AttributeClassifierConfig().attributes[a][0]
        mentioned = [r["attributes"][a] for r in tests for c in r["captions"] if a in c["mentions"]]
        assert res.mention_weighted.counts[a] == len(mentioned)
        assert res.mention_weighted.per_attribute[a] == pytest.approx(
            np.mean([v == first for v in mentioned]))
        assert res.per_image.counts[a] == len(tests)
        assert res.per_image.per_attribute[a] == pytest.approx(
            np.mean([r["attributes"][a] == first for r in tests]))
    assert res.images == len(tests) == synthbirds_small.spec.test
    d = res.as_dict()
    assert d["ceiling_attr_acc"] == res.overall and "real_attr_acc_size" in d


# -- the classifier ------------------------------------------------------------------------------------------
TINY = dict(widths=(4, 8, 8), convs_per_stage=1)


def test_classifier_shapes_and_resizing():
    torch.manual_seed(0)
    model = AttributeClassifier(AttributeClassifierConfig(image_size=32, **TINY)).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    logits = model(x)
    assert list(logits) == list(ATTRIBUTES)
    assert logits["size"].shape == (2, 2) and logits["wing_color"].shape == (2, 12)
    assert model.features(x).shape == (2, 8)
    big = nn.functional.interpolate(x, size=(48, 48), mode="nearest")
    resized = nn.functional.interpolate(big, size=(32, 32), mode="bilinear", align_corners=False,
                                        antialias=False)
    assert torch.allclose(model.features(big), model.features(resized), atol=1e-6)
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    assert torch.allclose(model.features(u8), model.features(u8.float() / 127.5 - 1))
    with pytest.raises(ValueError, match="at least two distinct values"):
        AttributeClassifierConfig(attributes={"size": ("small",)})


def test_save_load_round_trip_keeps_fingerprint(tmp_path, synthbirds_small):
    fp = synthbirds_fingerprint(synthbirds_small.root)
    model = AttributeClassifier(AttributeClassifierConfig(data_fingerprint=fp, **TINY)).eval()
    model.save_pretrained(tmp_path / "clf")
    loaded = load_attribute_classifier(tmp_path / "clf", synthbirds_small.root, strict=True)
    assert loaded.config == model.config and loaded.config.data_fingerprint == fp
    assert not loaded.training
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert all(torch.equal(model(x)[a], loaded(x)[a]) for a in ATTRIBUTES)
    saved = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert saved["data_fingerprint"] == fp and saved["class"] == "AttributeClassifier"


def test_fingerprint_tracks_attributes_file(tmp_path, synthbirds_small, caplog):
    root = tmp_path / "copy"
    root.mkdir()
    shutil.copy(synthbirds_small.root / "attributes.jsonl", root / "attributes.jsonl")
    fp = synthbirds_fingerprint(root)
    assert fp == synthbirds_fingerprint(synthbirds_small.root) and len(fp) == 16
    text = (root / "attributes.jsonl").read_text()
    (root / "attributes.jsonl").write_text(text.replace('"size":"small"', '"size":"large"', 1))
    changed = synthbirds_fingerprint(root)
    assert changed != fp
    # a classifier trained on the original, checked against the changed copy: both fingerprints named
    model = AttributeClassifier(AttributeClassifierConfig(data_fingerprint=fp, **TINY))
    model.save_pretrained(tmp_path / "clf")
    with caplog.at_level(logging.WARNING, logger="t2igan.evaluation"):
        load_attribute_classifier(tmp_path / "clf", root)
    assert fp in caplog.text and changed in caplog.text
    with pytest.raises(FingerprintMismatchError, match=f"{fp}.*{changed}"):
        load_attribute_classifier(tmp_path / "clf", root, strict=True)
    with pytest.raises(FileNotFoundError, match="attributes.jsonl"):
        synthbirds_fingerprint(tmp_path / "nowhere")


# -- augmentation --------------------------------------------------------------------------------------------
def test_augmentation_is_seeded_and_keeps_hue():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    cfg = AugmentConfig()
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    # a flat coloured image keeps its hue under the photometric changes (no noise, no blur)
    rgb = torch.tensor([0.8, 0.3, 0.1])
    flat = (rgb[None, :, None, None] * 2 - 1).expand(8, 3, 16, 16).contiguous()
    out = augment_batch(flat, AugmentConfig(noise=0.0, blur_prob=0.0), torch.Generator().manual_seed(2))
    hue = colorsys.rgb_to_hsv(*rgb.tolist())[0]
    for img in out:
        r, g, bl = ((img[:, 8, 8] + 1) / 2).tolist()
        assert colorsys.rgb_to_hsv(r, g, bl)[0] == pytest.approx(hue, abs=0.01)


# -- training and FID-SB -------------------------------------------------------------------------------------
def tiny_train_config(**kwargs) -> EvaluatorTrainConfig:
    return EvaluatorTrainConfig(epochs=2, batch_size=16, progress=False, device="cpu",
                                model=AttributeClassifierConfig(**TINY), **kwargs)


def test_train_evaluator_writes_classifier_and_ceiling(tmp_path, synthbirds_small):
    out = tmp_path / "evaluator"
    summary = train_evaluator(synthbirds_small.root, out, tiny_train_config())
    for name in ("config.json", "model.safetensors", "evaluator.json", "log.jsonl"):
        assert (out / name).is_file(), name
    fp = synthbirds_fingerprint(synthbirds_small.root)
    assert summary["data_fingerprint"] == fp and summary["epochs"] == 2 and summary["stopped"] == "done"
    recorded = json.loads((out / "evaluator.json").read_text())
    assert recorded["data_fingerprint"] == fp and recorded["config"]["epochs"] == 2
    ceiling = recorded["ceiling"]
    for a in ATTRIBUTES:
        assert 0.0 <= ceiling[f"ceiling_attr_acc_{a}"] <= 1.0 and 0.0 <= ceiling[f"real_attr_acc_{a}"] <= 1.0
    assert 0.0 <= summary["ceiling_attr_acc"] <= 1.0 and len(recorded["history"]) == 2
    model = load_attribute_classifier(out, synthbirds_small.root, strict=True)
    again = ceiling_accuracy(model, synthbirds_small.root)
    assert again.as_dict() == recorded["ceiling"]  # the saved weights reproduce the recorded ceiling exactly
    # the FID-SB reference of the test split is cached in the classifier dir and read back from there
    cached = list(out.glob(f"synthbirds-{fp}-test-{FID_SB_EXTRACTOR}-*.npz"))
    assert len(cached) == 1 and summary["fid_sb_reference"] == str(cached[0])
    ref = reference_statistics(model, synthbirds_small.root, "test", cache_dir=out)
    assert ref["path"] == str(cached[0]) and ref["num_images"] == synthbirds_small.spec.test
    # real test images against their own reference: distance zero (up to the matrix square root)
    real = load_synthbirds_split(synthbirds_small.root, "test", 64).images.float() / 127.5 - 1
    res = fid_sb(model, real, synthbirds_small.root, cache_dir=out)
    assert abs(res.value) < 1e-3 and res.num_images == res.num_reference == synthbirds_small.spec.test
    assert res.as_dict()["fid_sb"] == res.value and METRICS.get("fid_sb") is fid_sb
    noisy_images = (real + 0.5 * torch.randn_like(real)).clamp(-1, 1)
    noisy = fid_sb(model, noisy_images, synthbirds_small.root)
    assert noisy.value > 0 and noisy.value > 100 * abs(res.value)
    streamed = fid_sb(model, lambda idx: noisy_images[idx], synthbirds_small.root, num_images=len(real),
                      batch_size=7)  # a get_batch function and another batch size: the same value
    assert streamed.value == pytest.approx(noisy.value, rel=1e-6, abs=1e-9)
    ext = EXTRACTORS.get(FID_SB_EXTRACTOR)(weights_path=out, data_root=synthbirds_small.root)
    assert isinstance(ext, AttributeFeatureExtractor) and ext.feature_dim == 8
    assert ext(real[:2])["pool"].shape == (2, 8)


def test_train_evaluator_refuses_non_synthbirds_data(tmp_path, tiny_cub):
    with pytest.raises(FileNotFoundError, match="attributes.jsonl"):
        train_evaluator(tiny_cub.root, tmp_path / "out", tiny_train_config())
    assert not (tmp_path / "out").exists()


def test_train_evaluator_refuses_a_non_empty_out_dir(tmp_path, synthbirds_small):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        train_evaluator(synthbirds_small.root, tmp_path / "out", tiny_train_config())
    summary = train_evaluator(synthbirds_small.root, tmp_path / "out", tiny_train_config(), overwrite=True,
                              max_steps=2)
    assert summary["steps"] == 2 and summary["stopped"] == "max_steps" and summary["epochs"] == 0
    assert Path(summary["out_dir"], "model.safetensors").is_file()
    assert (tmp_path / "out" / "keep.txt").is_file()  # other files are left alone
    again = train_evaluator(synthbirds_small.root, tmp_path / "out", tiny_train_config(seed=1),
                            overwrite=True, max_steps=1)
    assert len((tmp_path / "out" / "log.jsonl").read_text().splitlines()) == 1  # the old log is replaced
    assert list((tmp_path / "out").glob("*.npz")) == [Path(again["fid_sb_reference"])]


def test_classifier_schedule_anneals_by_a_time_budget():
    # without a budget: linear warm-up over 10 steps, then cosine to zero at step 100
    assert _lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert _lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert _lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert _lr_factor(100, 10, 100) == pytest.approx(0.0)
    # a budget further along than the steps moves the schedule on: half the time spent at step 20 is the
    # cosine's middle, the whole budget is the end; a budget behind the steps changes nothing
    assert _lr_factor(20, 10, 100, time_frac=0.55) == pytest.approx(0.5)
    assert _lr_factor(20, 10, 100, time_frac=1.0) == pytest.approx(0.0)
    assert _lr_factor(55, 10, 100, time_frac=0.2) == pytest.approx(0.5)
    assert _lr_factor(2, 10, 100, time_frac=0.05) == pytest.approx(0.5)  # warm-up by the clock
