"""The shared per-family suite: every registered family builds from a run config, generates through the one
generator interface, round-trips through a model directory, gives batch-independent images, and trains and
resumes bit-identically with the one trainer. A new family is added to ``TINY`` or this suite fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import randomize_module
from t2igan.config import from_dict
from t2igan.models.base import TextCondition
from t2igan.models.registry import COMPONENT_CLASSES, FAMILIES, read_model_dir, write_model_dir
from t2igan.objectives import OBJECTIVES
from t2igan.pipeline import T2IPipeline
from t2igan.presets import PRESETS
from t2igan.training.trainer import GANRunConfig, TrainError, _load_damsm, build_networks, train_gan

# the smallest generator / discriminator of each family at 64 px
TINY = {
    "ssagan": ({"ngf": 4}, {"ndf": 4}),
    "dfgan": ({"ngf": 4}, {"ndf": 4}),
    "attngan": ({"gf_dim": 4}, {"df_dim": 4}),
    "stackgan": ({"ngf": 4}, {"ndf": 4}),
}
FAMILY_NAMES = sorted(TINY)


def tiny_config(root: Path, damsm: Path, family: str, **train) -> GANRunConfig:
    t = {"max_steps": 4, "batch_size": 16, "device": "cpu", "log_every": 1, "image_every": 0, "eval_every": -1,
         "progress": False, "tensorboard": False, "snapshot_every": 1000, "snapshot_minutes": None, "seed": 7}
    t.update(train)
    g, d = TINY[family]
    return from_dict(GANRunConfig, {
        "name": f"tiny-{family}", "family": family, "damsm": str(damsm),
        "data": {"kind": "synthbirds", "root": str(root), "image_size": 64},
        "generator": g, "discriminator": d, "train": t})


def test_registries_agree():
    assert set(FAMILIES.names()) == set(OBJECTIVES.names()) == set(TINY)
    for name in FAMILY_NAMES:
        fam = FAMILIES.get(name)
        for cls in (fam.generator, fam.discriminator, *fam.classes(64)):
            assert COMPONENT_CLASSES[cls.__name__] is cls
        assert any(p.values.get("family") == name for _, p in PRESETS.items()), f"no preset trains {name}"


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def built(request, synthbirds_small, tiny_damsm):
    family = request.param
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, family)
    damsm = _load_damsm(cfg.damsm)
    G, D, objective = build_networks(cfg, damsm)
    randomize_module(G, 3, residual_gamma=0.7)
    return family, G.eval(), D, damsm


def _condition(damsm, n: int) -> TextCondition:
    caps = torch.randint(1, damsm.text_encoder.config.vocab_size, (n, 6))
    lengths = torch.tensor([6, 3, 5, 1, 6, 2][:n])
    for i, length in enumerate(lengths):
        caps[i, length:] = 0
    return damsm.text_encoder.eval().encode(caps, lengths)


def test_shapes_and_maps(built):
    family, G, D, damsm = built
    cond = _condition(damsm, 3)
    with torch.no_grad():
        img, maps = G.synthesize(torch.randn(3, G.noise_dim), cond)
    assert img.shape == (3, 3, 64, 64) and float(img.abs().max()) <= 1.0
    if family == "ssagan":
        assert [m.shape[-1] for m in maps] == [4, 8, 16, 32, 64]
    else:  # AttnGAN at 64 px has one stage: no word attention
        assert maps is None
    assert G.num_parameters() > 0 and D.num_parameters() > 0


def test_discriminators_share_the_one_way_entry_point(built):
    """D(image) -> features, D(image, cond) == D(features=..., cond), and the same errors, in every family."""
    from t2igan.models.layers import OneWayDiscriminator

    family, _, D, _ = built
    d = next(m for m in D.modules() if isinstance(m, OneWayDiscriminator)).eval()
    dim = getattr(d.config, "cond_dim", None) or d.config.text_dim
    image, cond = torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, dim)
    with torch.no_grad():
        feats = d(image)
        direct, via = d(image, cond), d(None, cond, features=feats)
    assert feats.dim() == 4 and feats.shape[0] == 2
    direct, via = (list(x) if isinstance(x, tuple) else [x] for x in (direct, via))  # StackGAN: (cond, uncond)
    assert direct[0].shape[0] == 2 and len(direct) == len(via)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(direct, via))
    with pytest.raises(ValueError, match="exactly one of image and features"):
        d()
    with pytest.raises(ValueError, match="features were given without (sent_emb|mu)"):
        d(features=feats)


def test_model_dir_round_trip_and_batch_independence(built, tmp_path):
    family, G, D, damsm = built
    out = write_model_dir(tmp_path / "m", family, {"generator": G, "text_encoder": damsm.text_encoder,
                                                   "discriminator": D}, damsm.vocab, words_num=18)
    md = read_model_dir(out)
    a, b = G.state_dict(), md.components["generator"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert type(md.components["discriminator"]) is type(D)
    pipe = T2IPipeline.from_pretrained(out)
    words = [w for w in damsm.vocab.words[1:8]]
    prompts = [" ".join(words[:3]), " ".join(words[2:7]), words[0]]
    one = pipe(prompts, seed=5, num_images_per_prompt=2, batch_size=1)
    many = pipe(prompts, seed=5, num_images_per_prompt=2, batch_size=6)
    assert (one.tensors - many.tensors).abs().max() < 1e-5
    assert (pipe(prompts, seed=6).tensors - one.tensors[::2]).abs().max() > 1e-3  # the seed matters


@pytest.mark.parametrize("family", ["attngan", "stackgan"])
def test_training_resumes_bit_identically(synthbirds_small, tiny_damsm, tmp_path, one_thread, family):
    """4 steps straight == 2 steps + resume + 2 steps (across an epoch boundary: 60 images, batch 16)."""
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, family, ema=0.9 if family == "attngan" else None)
    straight = train_gan(cfg, runs_root=tmp_path / "a")
    first = train_gan(cfg, runs_root=tmp_path / "b", max_steps=2)
    resumed = train_gan(cfg, runs_root=tmp_path / "b", resume=first["run_dir"])
    assert straight["step"] == resumed["step"] == 4 and straight["epoch"] == resumed["epoch"] == 1
    snaps = []
    for run in (straight, resumed):
        d = Path(run["run_dir"]) / "snapshots"
        snap = d / (d / "latest").read_text().strip()
        from t2igan.models.base import load_state_dict_file

        snaps.append({p.stem: load_state_dict_file(p) for p in snap.glob("*.safetensors")})
    assert snaps[0].keys() == snaps[1].keys() and "generator" in snaps[0]
    for name in snaps[0]:
        for key, value in snaps[0][name].items():
            assert torch.equal(value, snaps[1][name][key]), f"{name}.{key}"
    log = (Path(straight["run_dir"]) / "log.jsonl").read_text()
    assert '"g/kl"' in log and '"d/loss"' in log
    # the exported model samples
    assert T2IPipeline.from_pretrained(Path(straight["run_dir"]) / "model")(["a bird"]).tensors.shape[-1] == 64


def test_a_size_the_family_cannot_make_is_named(synthbirds_small, tiny_damsm):
    from t2igan.config import ConfigError, to_dict

    raw = to_dict(tiny_config(synthbirds_small.root, tiny_damsm, "stackgan"))
    with pytest.raises(ConfigError, match="stage II"):
        from_dict(GANRunConfig, {**raw, "data": {**raw["data"], "image_size": 128}})


def test_stackgan_stage2_needs_and_freezes_its_stage1(tiny_damsm, one_thread):
    """Stage II starts from a stage-I run (--init-from), trains without touching it, and keeps it in eval mode."""
    from t2igan.models.stackgan import (
        StackGANStage1Config,
        StackGANStage1Generator,
        StackGANStage2Config,
        StackGANStage2Discriminator,
        StackGANStage2Generator,
    )
    from t2igan.objectives.base import Networks
    from t2igan.objectives.stackgan import StackGANObjective
    from t2igan.training.trainer import StepRunner

    damsm = _load_damsm(str(tiny_damsm))
    dim = damsm.text_encoder.embed_dim
    s1 = StackGANStage1Generator(StackGANStage1Config(ngf=8, text_dim=dim, cond_dim=8))
    randomize_module(s1, 1)  # non-trivial BN statistics: eval mode differs from train mode
    g2 = StackGANStage2Generator(StackGANStage2Config(ngf=8, text_dim=dim, cond_dim=8, r_num=1))
    assert "stage-I" in g2.init_from(s1)
    with pytest.raises(Exception, match="does not fit"):
        StackGANStage2Generator(StackGANStage2Config(ngf=16, text_dim=dim, cond_dim=8)).init_from(s1)
    before = {k: v.clone() for k, v in g2.STAGE1_G.state_dict().items()}
    rest = {k: v.clone() for k, v in g2.state_dict().items() if not k.startswith("STAGE1_G.")}
    from t2igan.models.stackgan import StackGANDiscriminatorConfig

    d2 = StackGANStage2Discriminator(StackGANDiscriminatorConfig(ndf=4, cond_dim=8))
    runner = StepRunner(StackGANObjective(), Networks(g2, d2, damsm.text_encoder.eval()), device=torch.device("cpu"))
    g2.train()
    assert not g2.STAGE1_G.training and g2.training
    batch = {"images": torch.rand(3, 3, 256, 256) * 2 - 1, "captions": torch.tensor([[1, 2, 0], [2, 3, 4], [5, 0, 0]]),
             "lengths": torch.tensor([2, 3, 1]), "class_ids": torch.tensor([1, 2, 3])}
    _, finite = runner.step(batch, torch.randn(3, g2.noise_dim), 0)
    assert finite
    after = g2.STAGE1_G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics untouched
    assert any(not torch.equal(rest[k], v) for k, v in g2.state_dict().items() if k in rest)
    # a new stage-II run without --init-from is refused, naming the option
    from t2igan.training.trainer import _init_generator

    with pytest.raises(TrainError, match="init_from"):
        _init_generator(StackGANStage2Generator(StackGANStage2Config(ngf=8, text_dim=dim, cond_dim=8)), None, damsm)


def test_stackgan_learning_rate_halves_every_20_epochs():
    from t2igan.objectives.stackgan import StackGANObjective, StackGANObjectiveConfig

    specs = StackGANObjective().optimizers()
    assert [specs["G"].lr_at(e) for e in (0, 19, 20, 45)] == [2e-4, 2e-4, 1e-4, 5e-5]
    assert specs["D"].lr_at(40) == pytest.approx(5e-5)
    flat = StackGANObjective(StackGANObjectiveConfig(lr_decay_epochs=0)).optimizers()
    assert flat["G"].lr_at(100) == 2e-4


def test_attngan_attention_maps_come_back_per_word(tiny_damsm, tmp_path):
    """At 128 px AttnGAN attends: the pipeline returns each image's word attention, padded to the longest prompt."""
    from t2igan.models.attngan import AttnGANGenerator, AttnGANGeneratorConfig

    damsm = _load_damsm(str(tiny_damsm))
    dim = damsm.text_encoder.embed_dim
    G = AttnGANGenerator(AttnGANGeneratorConfig(gf_dim=4, text_dim=dim, words_dim=dim, branch_num=2, r_num=1))
    randomize_module(G, 1)
    out = write_model_dir(tmp_path / "m", "attngan", {"generator": G, "text_encoder": damsm.text_encoder},
                          damsm.vocab, words_num=18)
    pipe = T2IPipeline.from_pretrained(out)
    words = damsm.vocab.words[1:6]
    res = pipe([" ".join(words), words[0]], seed=0, batch_size=1)
    assert res.tensors.shape == (2, 3, 128, 128)
    (maps,) = res.masks
    assert maps.shape == (2, 5, 64, 64)
    assert torch.allclose(maps[0].sum(0), torch.ones(64, 64), atol=1e-4)  # attention over the words sums to 1
    assert float(maps[1, 1:].abs().max()) == 0.0  # the one-word prompt: padding beyond its word
    # `t2igan sample --masks` draws each word's attention over the image, labelled with the word
    from PIL import Image

    from t2igan.cli import main

    assert main(["sample", "--model", str(out), "--prompt", " ".join(words[:3]), "--masks",
                 "--out", str(tmp_path / "s")]) == 0
    assert Image.open(tmp_path / "s" / "masks" / "p000_00.png").width == (1 + 3) * 128
    # the demo shows the same per-word attention, labelled
    from fastapi.testclient import TestClient

    from t2igan.demo import create_app

    r = TestClient(create_app(out, max_images=2)).post("/api/generate", json={"prompt": " ".join(words[:3]),
                                                                                "seed": 0, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["masks"]) == 2 and len(body["masks"][0]) == 3
    assert body["mask_labels"] == [f"attention of '{w}'" for w in words[:3]]


def _with_embeddings(src: Path, dst: Path, dim: int, n_bad: int = 0) -> Path:
    """A copy of a SynthBirds render with StackGAN-style char-CNN-RNN-embeddings.pickle in each split."""
    import pickle
    import shutil

    import numpy as np

    from t2igan.utils.io import safe_load_pickle

    shutil.copytree(src, dst)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        n = len(safe_load_pickle(dst / split / "filenames.pickle")) + n_bad
        with open(dst / split / "char-CNN-RNN-embeddings.pickle", "wb") as f:
            pickle.dump(rng.standard_normal((n, 10, dim)).astype(np.float32), f, protocol=2)
    return dst


def test_stackgan_trains_on_precomputed_char_cnn_rnn_embeddings(synthbirds_small, tiny_damsm, tmp_path, one_thread):
    from t2igan.config import to_dict
    from t2igan.data.base import DataConfig, DataError, TextImageDataset, load_corpus
    from t2igan.models.base import ModelLoadError

    root = _with_embeddings(synthbirds_small.root, tmp_path / "data", dim=24)
    data = DataConfig(kind="synthbirds", root=str(root), text_embeddings="char-CNN-RNN-embeddings.pickle")
    corpus = load_corpus(data)
    item = TextImageDataset.from_config(data, "train", corpus)[0]
    rec = corpus.records("train")[item["index"]]
    assert torch.equal(item["text_embedding"], torch.from_numpy(rec.embeddings[item["caption_index"]]))

    raw = to_dict(tiny_config(root, tiny_damsm, "stackgan", max_steps=2, image_every=2))
    raw["data"]["text_embeddings"] = "char-CNN-RNN-embeddings.pickle"
    raw["generator"]["text_dim"] = 24
    run = train_gan(from_dict(GANRunConfig, raw), runs_root=tmp_path / "runs")
    assert run["step"] == 2 and (Path(run["run_dir"]) / "samples" / "step_00000002.png").is_file()
    meta = read_model_dir(Path(run["run_dir"]) / "model", components=()).meta
    assert meta["condition"] == "char-cnn-rnn"
    with pytest.raises(ModelLoadError, match="cannot take a free-text prompt"):
        T2IPipeline.from_pretrained(Path(run["run_dir"]) / "model")
    # the generator's text_dim must be the embeddings', and only StackGAN takes them
    raw["generator"]["text_dim"] = 1024
    with pytest.raises(TrainError, match="generator.text_dim=24"):
        train_gan(from_dict(GANRunConfig, raw), runs_root=tmp_path / "runs")
    bad = to_dict(tiny_config(root, tiny_damsm, "ssagan"))
    bad["data"]["text_embeddings"] = "char-CNN-RNN-embeddings.pickle"
    with pytest.raises(TrainError, match="StackGAN"):
        train_gan(from_dict(GANRunConfig, bad), runs_root=tmp_path / "runs")
    # a file that does not fit the split list is named
    wrong = _with_embeddings(synthbirds_small.root, tmp_path / "wrong", dim=24, n_bad=3)
    with pytest.raises(DataError, match="char-CNN-RNN-embeddings.pickle: holds embeddings of"):
        load_corpus(data.replace(root=str(wrong)))
    with pytest.raises(DataError, match="text embeddings not found"):
        load_corpus(data.replace(text_embeddings="missing.pickle"))
