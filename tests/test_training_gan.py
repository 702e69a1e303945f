"""The GAN trainer: resume equivalence, 2-process data parallelism on gloo, export, errors, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from t2igan.config import ConfigError, from_dict, to_dict
from t2igan.models.base import load_state_dict_file
from t2igan.pipeline import T2IPipeline
from t2igan.training.trainer import GANRunConfig, TrainError, export_run, find_damsm, train_gan

SRC = Path(__file__).resolve().parents[1] / "src"


def tiny_config(root: Path, damsm: Path, family: str = "ssagan", **train) -> GANRunConfig:
    t = {"max_steps": 4, "batch_size": 16, "device": "cpu", "log_every": 1, "image_every": 0, "eval_every": -1,
         "progress": False, "tensorboard": False, "snapshot_every": 1000, "snapshot_minutes": None, "seed": 7}
    t.update(train)
    return from_dict(GANRunConfig, {
        "name": f"tiny-{family}", "family": family, "damsm": str(damsm),
        "data": {"kind": "synthbirds", "root": str(root), "image_size": 64},
        "generator": {"ngf": 4}, "discriminator": {"ndf": 4}, "train": t})


def final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    snap = run_dir / "snapshots" / (run_dir / "snapshots" / "latest").read_text().strip()
    return {p.stem: load_state_dict_file(p) for p in sorted(snap.glob("*.safetensors"))}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} differs"


@pytest.mark.parametrize("family,extra", [("ssagan", {"ema": 0.9}), ("dfgan", {"deterministic": True})])
def test_resume_gives_identical_weights(synthbirds_small, tiny_damsm, tmp_path, one_thread, family, extra):
    # 60 training images, batch 16: 3 steps per epoch, so the 4 steps cross an epoch boundary and the resume
    # happens in the middle of an epoch
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, family, **extra)
    straight = train_gan(cfg, runs_root=tmp_path / "a")
    first = train_gan(cfg, runs_root=tmp_path / "b", max_steps=2)
    assert first["stopped"] == "max_steps" and first["step"] == 2
    resumed = train_gan(cfg, runs_root=tmp_path / "b", resume=first["run_dir"])
    assert straight["step"] == resumed["step"] == 4 and straight["epoch"] == resumed["epoch"] == 1
    assert not (Path(first["run_dir"]) / "resumes.jsonl").exists()  # same config: no history line
    a, b = final_weights(Path(straight["run_dir"])), final_weights(Path(resumed["run_dir"]))
    assert "generator" in a and "discriminator" in a and ("generator_ema" in a) == ("ema" in extra)
    assert_same(a, b)
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is restored after a run
    # the weights moved, so the comparison above is not trivially true
    fresh = train_gan(cfg.replace(train=cfg.train.replace(max_steps=1)), runs_root=tmp_path / "c")
    g1 = final_weights(Path(fresh["run_dir"]))["generator"]
    assert any(not torch.equal(g1[k], a["generator"][k]) for k in g1)


def test_ema_switched_on_at_resume_starts_from_the_generator(synthbirds_small, tiny_damsm, tmp_path, one_thread):
    cfg = tiny_config(synthbirds_small.root, tiny_damsm)
    first = train_gan(cfg, runs_root=tmp_path, max_steps=2)
    g2 = final_weights(Path(first["run_dir"]))
    assert "generator_ema" not in g2
    with_ema = cfg.replace(train=cfg.train.replace(ema=0.9))
    train_gan(with_ema, runs_root=tmp_path, resume=first["run_dir"], max_steps=1)
    w = final_weights(Path(first["run_dir"]))
    g2, g3, ema = g2["generator"], w["generator"], w["generator_ema"]
    assert ema.keys() == g3.keys()
    moved = 0
    for k in g3:
        if "running_" in k or "num_batches_tracked" in k:  # buffers are copied from the generator
            assert torch.equal(ema[k], g3[k]), k
        else:  # one EMA step from the step-2 generator: 0.9 * g2 + 0.1 * g3
            torch.testing.assert_close(ema[k], g2[k].lerp(g3[k], 0.1), rtol=1e-5, atol=1e-6)
            moved += not torch.equal(g2[k], g3[k])
    assert moved > 0


def test_resume_overrides_are_recorded_and_exported(synthbirds_small, tiny_damsm, tmp_path, one_thread):
    # what a resume changes becomes the run's config (the export reads it) and a line of resumes.jsonl
    cfg = tiny_config(synthbirds_small.root, tiny_damsm)
    first = train_gan(cfg, runs_root=tmp_path, max_steps=2)
    run = Path(first["run_dir"])
    before = json.loads((run / "run_config.json").read_text())
    assert before["data"]["words_num"] != 30 and before["objective"].get("damsm_weight") != 0.5
    changed = cfg.replace(data=cfg.data.replace(words_num=30),
                          objective={**cfg.objective, "damsm_weight": 0.5})
    train_gan(changed, runs_root=tmp_path, resume=run, max_steps=1)
    after = json.loads((run / "run_config.json").read_text())
    assert after["data"]["words_num"] == 30 and after["objective"]["damsm_weight"] == 0.5
    assert after["generator"] == before["generator"] and after["train"]["seed"] == before["train"]["seed"]
    lines = [json.loads(x) for x in (run / "resumes.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["step"] == 2
    assert lines[0]["changed"]["data.words_num"] == [before["data"]["words_num"], 30]
    assert lines[0]["changed"]["objective.damsm_weight"] == [before["objective"].get("damsm_weight"), 0.5]
    assert set(lines[0]["changed"]) == {"data.words_num", "objective.damsm_weight"}
    model = export_run(run, tmp_path / "model", discriminator=False)
    assert json.loads((model / "pipeline.json").read_text())["words_num"] == 30
    # resuming again with that config adds nothing
    train_gan(changed, runs_root=tmp_path, resume=run, max_steps=1)
    assert len((run / "resumes.jsonl").read_text().splitlines()) == 1


def test_run_dir_logs_and_export(synthbirds_small, tiny_damsm, tmp_path, one_thread):
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, image_every=2, eval_every=0, eval_captions=20,
                      eval_rp_trials=20, sample_captions=3)
    summary = train_gan(cfg, runs_root=tmp_path)
    run = Path(summary["run_dir"])
    saved = json.loads((run / "run_config.json").read_text())
    assert saved["family"] == "ssagan" and saved["generator"] == {"ngf": 4}
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "d/loss" in x]
    assert steps == [1, 2, 3, 4]
    for key in ("d/real", "d/fake", "d/mismatch", "d/gp", "g/adv", "g/damsm", "train/images_per_s", "lr/G"):
        assert key in lines[0], key
    assert lines[0]["lr/D"] == pytest.approx(4e-4)
    assert any("eval/r_precision" in x for x in lines)
    assert sorted(p.name for p in (run / "samples").glob("step_*.png")) == ["step_00000002.png",
                                                                              "step_00000004.png"]
    assert (run / "samples" / "masks_step_00000004.png").is_file()
    assert (run / "curves.png").is_file()
    # the exported model opens in the pipeline and generates at the training size
    pipe = T2IPipeline.from_pretrained(run / "model")
    out = pipe(["a small bird with a red crown"], seed=1)
    assert out.tensors.shape == (1, 3, 64, 64) and len(out.masks) == 5
    # export from a snapshot equals the end-of-run export
    again = export_run(run, tmp_path / "exported")
    a = load_state_dict_file(run / "model" / "generator" / "model.safetensors")
    b = load_state_dict_file(again / "generator" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # without the discriminator: smaller, and the same images; with the DAMSM image encoder bundled,
    # R-precision needs nothing else and equals the one computed with the DAMSM directory
    small = export_run(run, tmp_path / "small", discriminator=False, image_encoder=True)
    assert not (small / "discriminator").exists()
    assert set(json.loads((small / "pipeline.json").read_text())["components"]) == {"generator", "text_encoder",
                                                                                   "image_encoder"}
    assert torch.equal(T2IPipeline.from_pretrained(small)(["a small bird"], seed=1).tensors,
                       pipe(["a small bird"], seed=1).tensors)
    from t2igan.evaluation.protocol import EvalConfig
    from t2igan.pipeline import evaluate_model

    cfg = EvalConfig(metrics=("r_precision",), rp_trials=100, rp_folds=10, rp_candidates=4)
    bundled = evaluate_model(small, tmp_path / "eval_bundled", cfg, device="cpu", samples=2)
    listed = evaluate_model(run / "model", tmp_path / "eval_listed", cfg, device="cpu", samples=2)
    m1, m2 = (json.loads((p.parent / "metrics.json").read_text())["metrics"] for p in (bundled, listed))
    assert m1["r_precision"] == m2["r_precision"]
    assert json.loads((bundled.parent / "metrics.json").read_text())["model"]["damsm"] == str(small)


def test_damsm_missing_or_auto(synthbirds_small, tiny_damsm, tmp_path):
    cfg = tiny_config(synthbirds_small.root, tiny_damsm)
    with pytest.raises(TrainError, match="pretrained DAMSM"):
        train_gan(cfg.replace(damsm=None), runs_root=tmp_path)
    with pytest.raises(TrainError, match="vocab.json"):
        train_gan(cfg.replace(damsm=str(tmp_path)), runs_root=tmp_path)
    with pytest.raises(TrainError, match="no pretrained DAMSM"):
        find_damsm(tmp_path / "runs", cfg.data)
    # a DAMSM run on the same data is found; one on other data is not
    for i, root in enumerate([str(synthbirds_small.root), str(tmp_path / "other")]):
        run = tmp_path / "runs" / f"0000{i}-damsm"
        (run / "encoders").mkdir(parents=True)
        (run / "encoders" / "vocab.json").write_text("{}")
        (run / "run_config.json").write_text(json.dumps({"data": {"kind": "synthbirds", "root": root},
                                                         "text_encoder": {}}))
    assert find_damsm(tmp_path / "runs", cfg.data) == tmp_path / "runs" / "00000-damsm" / "encoders"


def test_config_errors_name_the_key(synthbirds_small, tiny_damsm):
    cfg = tiny_config(synthbirds_small.root, tiny_damsm)
    with pytest.raises(Exception, match="bogus"):
        cfg.replace(generator={"bogus": 1})
    with pytest.raises(Exception, match="image_size"):
        cfg.replace(generator={"image_size": 128})
    with pytest.raises(Exception, match="family"):
        cfg.replace(family="nope")


def test_nonfinite_loss_stops_with_a_snapshot(synthbirds_small, tiny_damsm, tmp_path, one_thread):
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, max_nonfinite=2)
    cfg = cfg.replace(objective={"lr_d": 1e30, "lr_g": 1e30})  # weights blow up within a few steps
    with pytest.raises(TrainError, match="non-finite"):
        train_gan(cfg.replace(train=cfg.train.replace(max_steps=30)), runs_root=tmp_path)
    run = next(tmp_path.glob("*-tiny-ssagan"))
    assert (run / "snapshots" / "latest").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_steps"] >= 2


_WORKER = textwrap.dedent("""
    import json, sys, torch
    from t2igan.config import ConfigError, from_dict, to_dict
    from t2igan.training.trainer import GANRunConfig, GANTrainer
    from t2igan.utils import dist as tdist
    torch.set_num_threads(1)
    cfg = from_dict(GANRunConfig, json.loads(open(sys.argv[1]).read()))
    resume = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    trainer = GANTrainer(cfg, sys.argv[2], resume, ())
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else None
    summary = trainer.run(steps)
    torch.save({k: v.detach().cpu() for k, v in trainer.nets.generator.state_dict().items()} |
               {"D." + k: v.detach().cpu() for k, v in trainer.nets.discriminator.state_dict().items()},
               f"{sys.argv[2]}/rank{tdist.rank()}-{summary['step']}.pt")
    if tdist.rank() == 0:
        open(f"{sys.argv[2]}/run_dir.txt", "w").write(summary["run_dir"])
""")


def _torchrun(tmp_path: Path, cfg: GANRunConfig, runs: Path, resume: str = "-", steps: int | None = None) -> None:
    from t2igan.config import to_dict

    (tmp_path / "cfg.json").write_text(json.dumps(to_dict(cfg)))
    (tmp_path / "worker.py").write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "worker.py"), str(tmp_path / "cfg.json"), str(runs), resume]
    cmd += [str(steps)] if steps else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_process_gloo_replicas_and_resume(synthbirds_small, tiny_damsm, tmp_path):
    # batch 8 per process x 2 processes: 3 steps per epoch; BN of the generator synchronised
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, batch_size=8)
    straight, split = tmp_path / "straight", tmp_path / "split"
    _torchrun(tmp_path, cfg, straight)
    r0, r1 = torch.load(straight / "rank0-4.pt"), torch.load(straight / "rank1-4.pt")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"replicas differ in {k}"
    bn = [k for k in r0 if k.endswith("running_mean")]
    assert bn and any(r0[k].abs().sum() > 0 for k in bn)
    _torchrun(tmp_path, cfg, split, steps=2)
    run_dir = (split / "run_dir.txt").read_text()
    _torchrun(tmp_path, cfg, split, resume=run_dir)
    s0 = torch.load(split / "rank0-4.pt")
    for k in r0:
        assert torch.equal(r0[k], s0[k]), f"resumed 2-process run differs in {k}"
    snap = final_weights(Path(run_dir))
    assert all(torch.equal(snap["generator"][k], r0[k]) for k in snap["generator"])


def test_cli_train_dry_run_and_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-m", "t2igan.cli", "train", "--dry-run", "--preset", "dfgan-synthetic",
                          "--set", "generator.ngf=8", "--steps", "5"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["family"] == "dfgan" and cfg["generator"]["ngf"] == 8 and cfg["train"]["max_steps"] == 5
    bad = subprocess.run([sys.executable, "-m", "t2igan.cli", "train", "--dry-run", "--set", "generator.bogus=1"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "bogus" in bad.stderr
    nodamsm = subprocess.run([sys.executable, "-m", "t2igan.cli", "train", "--runs", str(tmp_path / "runs"),
                              "--data", str(tmp_path)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert nodamsm.returncode != 0 and "pretrain-damsm" in nodamsm.stderr


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_bf16_channels_last_training(synthbirds_small, tiny_damsm, tmp_path, one_thread, family):
    # autocast phases in bf16, penalty phases in fp32 (they receive fp32 inputs): losses finite, weights move
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, family, amp="bf16", channels_last=True, max_steps=2)
    summary = train_gan(cfg, runs_root=tmp_path)
    assert summary["skipped_steps"] == 0
    lines = [json.loads(x) for x in (Path(summary["run_dir"]) / "log.jsonl").read_text().splitlines()]
    assert all(isinstance(x[k], float) for x in lines if "d/loss" in x for k in ("d/loss", "d/gp", "g/loss")), lines
    g = load_state_dict_file(Path(summary["model"]) / "generator" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in g.values() if v.is_floating_point())
    assert any(v.is_floating_point() for v in g.values())


@pytest.mark.parametrize("native", [False, True], ids=["avx2-cpu", "bf16-cpu"])
def test_amp_auto_is_resolved_once_for_training_and_samples(synthbirds_small, tiny_damsm, tmp_path, one_thread,
                                                           monkeypatch, native):
    # amp=auto becomes bf16 only where the CPU has it; the training phases and the sample grid both use the
    # resolved mode (the grid once compared the raw config value with "bf16" and so never used bf16 under auto)
    import t2igan.training.trainer as trainer_mod
    from t2igan.utils import device as devmod

    monkeypatch.setattr(devmod, "_cpu_bf16", lambda: native)
    modes: list[str] = []
    real = trainer_mod._autocast
    monkeypatch.setattr(trainer_mod, "_autocast", lambda dev, amp: modes.append(amp) or real(dev, amp))
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, amp="auto", max_steps=1)
    train_gan(cfg, runs_root=tmp_path)  # one step, then the end-of-run sample grid
    want = "bf16" if native else "off"
    assert want in modes and set(modes) <= {want, "off"}
    assert modes[-1] == want  # the last autocast is the sample grid's generation


def test_warmup_trains_only_the_named_optimizers_then_all(synthbirds_small, tiny_damsm, tmp_path, one_thread):
    # a run started from another run's generator (train.init_from) with a discriminator warm-up: during the
    # warm-up steps the generator's weights stay those it started from while the discriminator learns
    cfg = tiny_config(synthbirds_small.root, tiny_damsm, max_steps=2)
    src = train_gan(cfg, runs_root=tmp_path / "src")
    g0 = final_weights(Path(src["run_dir"]))["generator"]
    warm = cfg.replace(train=cfg.train.replace(init_from=src["run_dir"], warmup_steps=2, max_steps=3))
    run = train_gan(warm, runs_root=tmp_path / "warm", max_steps=2)
    w = final_weights(Path(run["run_dir"]))
    params = [k for k in g0 if "running_" not in k and "num_batches_tracked" not in k]
    assert all(torch.equal(w["generator"][k], g0[k]) for k in params)
    fresh_d = final_weights(Path(train_gan(cfg.replace(train=cfg.train.replace(max_steps=0)),
                                           runs_root=tmp_path / "d0")["run_dir"]))["discriminator"]
    assert any(not torch.equal(w["discriminator"][k], fresh_d[k]) for k in fresh_d)
    # after the warm-up the generator trains
    run = train_gan(warm, runs_root=tmp_path / "warm", resume=run["run_dir"])
    assert run["step"] == 3
    g3 = final_weights(Path(run["run_dir"]))["generator"]
    assert any(not torch.equal(g3[k], g0[k]) for k in params)
    with pytest.raises(TrainError, match="warmup_optimizers"):
        train_gan(warm.replace(train=warm.train.replace(warmup_optimizers=("X",))), runs_root=tmp_path / "bad")
    for bad in ({"warmup_steps": -1}, {"warmup_steps": 3, "warmup_optimizers": []}):
        with pytest.raises(ConfigError, match="warmup"):
            from_dict(GANRunConfig, {**to_dict(warm), "train": {**to_dict(warm.train), **bad}})
