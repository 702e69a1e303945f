"""DAMSM pretraining: a short run's outputs, resume equivalence, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from t2igan.data.synthetic import SynthBirdsSpec, prepare_synthbirds
from t2igan.models.damsm import ImageEncoder, TextEncoder
from t2igan.presets import resolve_config
from t2igan.text.vocab import Vocabulary
from t2igan.training.checkpoint import ResumeError, load_trainer_state
from t2igan.training.damsm import DAMSMRunConfig, pretrain_damsm


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    root = tmp_path_factory.mktemp("damsm") / "sb"
    prepare_synthbirds(root, SynthBirdsSpec(size=32, train=48, test=24, seed=1), workers=1, progress=False)
    return root


def _config(root, **train):
    values = {"epochs": 2, "batch_size": 8, "rp_trials": 100, "attention_examples": 2, "progress": False,
              "tensorboard": False, **train}
    return resolve_config(DAMSMRunConfig, preset="damsm-synthbirds", task="damsm", overrides=[
        f"data.root={root}", "data.image_size=32", "image_encoder.input_size=32", "image_encoder.light_width=8",
        *[f"train.{k}={v}" for k, v in values.items()]])


def test_short_run_writes_everything(birds, tmp_path):
    summary = pretrain_damsm(_config(birds, epochs=1), runs_root=tmp_path)
    run = tmp_path / "00000-damsm-synthbirds"
    assert summary["run_dir"] == str(run) and summary["stopped"] == "done" and summary["epoch"] == 1
    assert summary["step"] == 48 // 8
    saved = json.loads((run / "run_config.json").read_text())
    vocab = Vocabulary.load(run / "encoders" / "vocab.json")
    assert saved["text_encoder"]["vocab_size"] == len(vocab)
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    val = [x for x in lines if "val/r_precision" in x]
    assert len(val) == 1 and 0.0 <= val[0]["val/r_precision"] <= 1.0
    assert (run / "attention" / "epoch_0001.png").is_file()
    assert (run / "snapshots" / "latest").read_text().strip() == "step-00000006"
    state = load_trainer_state(run / "snapshots" / "step-00000006" / "trainer_state.pt")
    assert state["epoch"] == 1 and state["batch"] == 0 and "state" in state["optimizer"]
    # the exported encoders load and embed
    te = TextEncoder.from_pretrained(run / "encoders" / "text_encoder").eval()
    ie = ImageEncoder.from_pretrained(run / "encoders" / "image_encoder").eval()
    words, sent = te(torch.tensor([[1, 2, 3]]), torch.tensor([3]))
    regions, code = ie(torch.zeros(1, 3, 32, 32))
    assert sent.shape == (1, 256) and code.shape == (1, 256) and regions.shape[1] == 256


def test_lr_decays_per_epoch_to_the_floor(birds, tmp_path):
    from t2igan.training.damsm import _lr_at

    cfg = _config(birds).train
    assert _lr_at(cfg, 0) == pytest.approx(0.002)
    assert _lr_at(cfg, 1) == pytest.approx(0.002 * 0.98)
    # decays while above 0.0002: the first value at or below it is where it stops
    k = next(e for e in range(1000) if _lr_at(cfg, e) <= 0.0002)
    assert _lr_at(cfg, k + 10) == _lr_at(cfg, k)


def test_resume_mid_epoch_equals_straight_run(birds, tmp_path):
    straight = pretrain_damsm(_config(birds), runs_root=tmp_path / "a")
    first = pretrain_damsm(_config(birds), runs_root=tmp_path / "b", max_steps=4)
    assert first["stopped"] == "max_steps" and first["step"] == 4
    state = load_trainer_state(
        next((tmp_path / "b").glob("*/snapshots/step-00000004")) / "trainer_state.pt")
    assert state["epoch"] == 0 and state["batch"] == 4
    resumed = pretrain_damsm(_config(birds), resume=first["run_dir"])
    assert resumed["step"] == straight["step"] == 12
    assert not (Path(first["run_dir"]) / "resumes.jsonl").exists()  # same config: no history line
    for name, cls in (("text_encoder", TextEncoder), ("image_encoder", ImageEncoder)):
        a = cls.from_pretrained(f"{straight['encoders']}/{name}").state_dict()
        b = cls.from_pretrained(f"{resumed['encoders']}/{name}").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_stop_inside_an_epoch_is_logged_as_that_epoch(birds, tmp_path, caplog):
    # 48 images, batch 8: 6 batches an epoch; 8 steps stop in the second epoch after 2 of its batches
    with caplog.at_level("INFO", logger="t2igan.training"):
        summary = pretrain_damsm(_config(birds, epochs=3, val_every=1), runs_root=tmp_path, max_steps=8)
    assert summary["epoch"] == 1 and summary["stopped"] == "max_steps"
    lines = [r.getMessage() for r in caplog.records if "val/r_precision" in r.getMessage()]
    assert [x.split(":")[0] for x in lines] == ["epoch 1", "epoch 2 (stopped by max_steps after 2 of 6 batches)"]


def test_resume_with_a_changed_config_records_it(birds, tmp_path):
    first = pretrain_damsm(_config(birds, epochs=1), runs_root=tmp_path, max_steps=2)
    run = Path(first["run_dir"])
    assert json.loads((run / "run_config.json").read_text())["train"]["gamma3"] != 7.5
    pretrain_damsm(_config(birds, epochs=1, gamma3=7.5), resume=run)
    saved = json.loads((run / "run_config.json").read_text())
    assert saved["train"]["gamma3"] == 7.5 and saved["text_encoder"]["vocab_size"] > 0  # still the full config
    (line,) = [json.loads(x) for x in (run / "resumes.jsonl").read_text().splitlines()]
    assert line["step"] == 2 and set(line["changed"]) == {"train.gamma3"} and line["changed"]["train.gamma3"][1] == 7.5


def test_resume_without_snapshot_is_a_clear_error(tmp_path, birds):
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(ResumeError, match="no snapshot"):
        pretrain_damsm(_config(birds), resume=tmp_path / "empty-run")


def test_cli_dry_run_prints_the_resolved_config(birds):
    import contextlib
    import io

    from t2igan.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["pretrain-damsm", "--data", str(birds), "--set", "train.batch_size=12", "--dry-run"]) == 0
    cfg = json.loads(buf.getvalue())
    assert cfg["data"]["root"] == str(birds)
    assert cfg["train"]["batch_size"] == 12
    assert cfg["image_encoder"]["backbone"] == "light"  # from the damsm-synthbirds preset
    assert cfg["image_encoder"]["light_pool"] == "max"
    assert cfg["data"]["random_crop"] is False  # whole frames, so SynthBirds' beaks at the edge stay in view


def test_cli_rejects_an_unknown_key(capsys):
    from t2igan.cli import main

    assert main(["pretrain-damsm", "--set", "train.btach_size=3", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "train.btach_size" in err and "batch_size" in err


def test_non_finite_losses_are_skipped_then_stop_the_run(birds, tmp_path, monkeypatch):
    import t2igan.training.damsm as damsm_mod

    real = damsm_mod.damsm_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 2:  # two good steps, then NaN forever
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(damsm_mod, "damsm_loss", flaky)
    summary = pretrain_damsm(_config(birds, max_nonfinite=3), runs_root=tmp_path)
    assert summary["stopped"] == "non-finite loss"
    assert summary["step"] == 2 and summary["skipped_steps"] == 3
    run = tmp_path / "00000-damsm-synthbirds"
    assert (run / "snapshots" / "latest").read_text().strip() == "step-00000002"


def _states(enc_dir):
    return {name: cls.from_pretrained(f"{enc_dir}/{name}").state_dict()
            for name, cls in (("text_encoder", TextEncoder), ("image_encoder", ImageEncoder))}


def test_init_from_with_frozen_text_encoder_refits_the_image_encoder_only(birds, tmp_path):
    base = pretrain_damsm(_config(birds, epochs=1), runs_root=tmp_path / "a")
    # a config that asks for another architecture: init_from's own replaces it (else the weights would not load)
    cfg = _config(birds, epochs=1, freeze_text=True).replace(init_from=base["encoders"])
    cfg = cfg.replace(image_encoder=cfg.image_encoder.replace(light_width=4))
    refit = pretrain_damsm(cfg, runs_root=tmp_path / "b")
    before, after = _states(base["encoders"]), _states(refit["encoders"])
    assert all(torch.equal(before["text_encoder"][k], v) for k, v in after["text_encoder"].items())
    changed = [k for k, v in after["image_encoder"].items() if not torch.equal(before["image_encoder"][k], v)]
    assert any(k.startswith("emb_cnn_code") for k in changed) and any(k.startswith("stem") for k in changed)
    saved = json.loads((tmp_path / "b" / "00000-damsm-synthbirds" / "run_config.json").read_text())
    assert saved["image_encoder"]["light_width"] == 8 and saved["init_from"] == base["encoders"]
    assert Vocabulary.load(f"{refit['encoders']}/vocab.json") == Vocabulary.load(f"{base['encoders']}/vocab.json")


def test_init_from_without_freezing_starts_from_the_weights(birds, tmp_path, monkeypatch):
    import t2igan.training.damsm as damsm_mod

    base = pretrain_damsm(_config(birds, epochs=1), runs_root=tmp_path / "a")
    seen = {}
    real = damsm_mod._encode

    def spy(text_enc, img_enc, *args):  # the weights the first step starts from, and the text encoder's mode
        if not seen:
            seen["text"] = {k: v.clone() for k, v in text_enc.state_dict().items()}
            seen["training"] = text_enc.training
        return real(text_enc, img_enc, *args)

    monkeypatch.setattr(damsm_mod, "_encode", spy)
    cont = pretrain_damsm(_config(birds, epochs=1).replace(init_from=base["encoders"]), runs_root=tmp_path / "b")
    before = _states(base["encoders"])["text_encoder"]
    assert all(torch.equal(before[k], v) for k, v in seen["text"].items()) and seen["training"]
    after = _states(cont["encoders"])["text_encoder"]
    assert any(not torch.equal(before[k], v) for k, v in after.items())  # and the text encoder trains on


def test_frozen_text_encoder_runs_in_eval_mode(birds, tmp_path, monkeypatch):
    import t2igan.training.damsm as damsm_mod

    base = pretrain_damsm(_config(birds, epochs=1), runs_root=tmp_path / "a")
    modes = []
    real = damsm_mod._encode

    def spy(text_enc, img_enc, *args):
        modes.append((text_enc.training, img_enc.training))
        return real(text_enc, img_enc, *args)

    monkeypatch.setattr(damsm_mod, "_encode", spy)
    # two epochs: validation and the attention figure of epoch 1 must leave the text encoder in eval mode
    pretrain_damsm(_config(birds, freeze_text=True).replace(init_from=base["encoders"]), runs_root=tmp_path / "b")
    train_steps = [m for m in modes if m[1]]
    assert len(train_steps) == 12 and all(not t for t, _ in train_steps)


def test_freeze_text_needs_init_from_and_init_from_is_checked(birds, tmp_path):
    with pytest.raises(ValueError, match="freeze_text.*init_from"):
        pretrain_damsm(_config(birds, freeze_text=True), runs_root=tmp_path)
    (tmp_path / "half" / "text_encoder").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="image_encoder"):
        pretrain_damsm(_config(birds).replace(init_from=str(tmp_path / "half")), runs_root=tmp_path)
    base = pretrain_damsm(_config(birds, epochs=1), runs_root=tmp_path / "a")
    other = Vocabulary(["<end>", "zebra"])
    other.save(tmp_path / "other.json")
    cfg = _config(birds).replace(init_from=base["encoders"])
    with pytest.raises(ValueError, match="other.json"):
        pretrain_damsm(cfg.replace(data=cfg.data.replace(vocab=str(tmp_path / "other.json"))), runs_root=tmp_path)
    assert not list(tmp_path.glob("0*"))  # no run directory was made for a rejected config


def test_val_every_validates_every_kth_epoch_and_the_last(birds, tmp_path):
    pretrain_damsm(_config(birds, epochs=3, val_every=2), runs_root=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "00000-damsm-synthbirds" / "log.jsonl").read_text().splitlines()]
    epochs = [x for x in lines if "train/images_per_s" in x]
    assert [x["epoch"] for x in epochs] == [1, 2, 3]
    assert [("val/r_precision" in x) for x in epochs] == [False, True, True]
    assert sorted(p.name for p in (tmp_path / "00000-damsm-synthbirds" / "attention").iterdir()) == [
        "epoch_0002.png", "epoch_0003.png"]
    with pytest.raises(ValueError, match="val_every"):
        pretrain_damsm(_config(birds, val_every=0), runs_root=tmp_path / "bad")


def test_channels_last_gives_the_same_loss_and_exports_plain_weights(birds, tmp_path, monkeypatch):
    import t2igan.training.damsm as damsm_mod

    real = damsm_mod.damsm_loss
    first: list[float] = []

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        if len(first) < 2 and args[0].requires_grad:  # the first training step of each run
            first.append(float(out.total.detach()))
        return out

    monkeypatch.setattr(damsm_mod, "damsm_loss", spy)
    runs = {}
    for cl in (False, True):
        first_before = len(first)
        runs[cl] = pretrain_damsm(_config(birds, channels_last=cl, amp=False), runs_root=tmp_path / str(cl),
                                  max_steps=1)
        assert len(first) == first_before + 1
    assert first[0] == pytest.approx(first[1], rel=1e-5)
    ie = ImageEncoder.from_pretrained(f"{runs[True]['encoders']}/image_encoder").eval()
    assert all(v.is_contiguous() for v in ie.state_dict().values())
