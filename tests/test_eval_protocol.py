"""The evaluation protocol: jobs, metrics of a generator against the real test images, the CLI report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2igan.data.base import DataConfig, TextImageDataset, load_corpus
from t2igan.evaluation.protocol import EvalConfig, dataset_fingerprint, evaluate_generator, make_jobs

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def test_split(synthbirds_small) -> TextImageDataset:
    cfg = DataConfig(kind="synthbirds", root=str(synthbirds_small.root), image_size=64)
    return TextImageDataset.from_config(cfg, "test", load_corpus(cfg), train=False)


def real_generator(dataset: TextImageDataset, jobs):
    """A 'generator' that returns the real image of each job's test image (FID against the reference = 0)."""
    real = dataset.with_mode(caption_mode="first")

    def generate(ids, indices):
        return torch.stack([real[jobs.record[i]]["image"] for i in indices])

    return generate


def test_jobs_round_by_round_and_cycled(test_split):
    n_img = len(test_split.records)
    jobs = make_jobs(test_split, 2, None)
    assert len(jobs) == jobs.pairs == 2 * n_img
    assert jobs.record[:n_img] == list(range(n_img)) and set(jobs.caption[:n_img]) == {0}
    assert set(jobs.caption[n_img:]) == {1}
    cyc = make_jobs(test_split, 1, n_img + 3)
    assert cyc.pairs == n_img and cyc.record[n_img:] == [0, 1, 2]


def test_real_images_give_zero_fid_and_batch_size_does_not_matter(test_split, tmp_path, one_thread):
    cfg = EvalConfig(metrics=("fid", "kid", "is"), extractor="random-tiny", cache_dir=str(tmp_path), batch_size=7)
    jobs = make_jobs(test_split, 1, None)
    res = evaluate_generator(real_generator(test_split, jobs), test_split, cfg)
    assert abs(res["metrics"]["fid"]) < 1e-6
    assert res["protocol"]["num_images"] == len(test_split.records) and res["protocol"]["extractor"] == "random-tiny"
    assert res["protocol"]["reference"]["fingerprint"] == dataset_fingerprint(test_split)
    # noise images are far from the reference; the result does not depend on the batch size
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(len(jobs), 3, 64, 64, generator=g) * 2 - 1

    def noisy(ids, indices):
        return noise[torch.as_tensor(indices)]

    a = evaluate_generator(noisy, test_split, cfg)["metrics"]
    b = evaluate_generator(noisy, test_split, cfg.replace(batch_size=3))["metrics"]
    assert a["fid"] > 1.0
    for k in ("fid", "kid", "inception_score"):
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k


def test_r_precision_of_an_oracle_and_of_noise(test_split, tiny_damsm, one_thread):
    from t2igan.models.damsm import ImageEncoder, TextEncoder

    te = TextEncoder.from_pretrained(tiny_damsm / "text_encoder")
    ie = ImageEncoder.from_pretrained(tiny_damsm / "image_encoder")
    jobs = make_jobs(test_split, 1, None)
    cfg = EvalConfig(metrics=("r_precision",), rp_trials=200, rp_folds=10, rp_candidates=5)
    res = evaluate_generator(real_generator(test_split, jobs), test_split, cfg, damsm=(te, ie))
    assert res["metrics"]["r_precision_candidates"] == 5 and res["metrics"]["r_precision_trials"] == 200

    class Oracle(torch.nn.Module):
        """An 'image encoder' whose code of image i is the sentence code of job i's caption: R-precision 1."""

        def forward(self, images):
            idx = images[:, 0, 0, 0].round().long()
            ids = [list(test_split.records[jobs.record[int(i)]].captions[0][:test_split.words_num]) for i in idx]
            caps = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
            for r, x in enumerate(ids):
                caps[r, :len(x)] = torch.as_tensor(x)
            sent = te(caps, torch.as_tensor([len(x) for x in ids]))[1]
            return None, sent

    def tagged(ids, indices):  # the job index written into pixel (0, 0) so the oracle knows the caption
        out = torch.zeros(len(indices), 3, 64, 64)
        out[:, 0, 0, 0] = torch.as_tensor(indices, dtype=torch.float) / 1000
        return out

    class Scaled(Oracle):
        def forward(self, images):
            return super().forward(images * 1000)

    oracle = evaluate_generator(tagged, test_split, cfg, damsm=(te, Scaled()))
    assert oracle["metrics"]["r_precision"] == pytest.approx(1.0)


def test_unknown_metric_and_missing_inputs(test_split):
    with pytest.raises(ValueError, match="bogus"):
        EvalConfig(metrics=("fid", "bogus"))
    with pytest.raises(ValueError, match="DAMSM"):
        evaluate_generator(lambda ids, idx: torch.zeros(len(idx), 3, 64, 64), test_split,
                           EvalConfig(metrics=("r_precision",)))


def test_cli_evaluate_writes_metrics_and_report(synthbirds_small, tiny_damsm, tmp_path):
    from t2igan.config import from_dict
    from t2igan.training.trainer import GANRunConfig, train_gan

    cfg = from_dict(GANRunConfig, {
        "name": "tiny", "family": "dfgan", "damsm": str(tiny_damsm),
        "data": {"kind": "synthbirds", "root": str(synthbirds_small.root), "image_size": 64},
        "generator": {"ngf": 4}, "discriminator": {"ndf": 4},
        "train": {"max_steps": 1, "batch_size": 8, "device": "cpu", "image_every": 0, "eval_every": 2,
                  "eval_captions": 20, "eval_rp_trials": 20, "progress": False, "tensorboard": False}})
    model = Path(train_gan(cfg, runs_root=tmp_path / "runs")["model"])
    meta = json.loads((model / "pipeline.json").read_text())
    assert meta["damsm"] == str(tiny_damsm.resolve()) and meta["data"]["kind"] == "synthbirds"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "t2igan.cli", "evaluate", "--model", str(model), "--metrics",
                           "fid,kid,is,r_precision", "--extractor", "random-tiny", "--num-images", "30",
                           "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "metrics.json").read_text())
    for key in ("fid", "kid", "inception_score", "r_precision"):
        assert isinstance(doc["metrics"][key], float), key
    p = doc["protocol"]
    assert p["num_images"] == 30 and p["seed"] == 0 and p["extractor"] == "random-tiny"
    assert p["weights_hash"] == "random-seed-0" and p["reference"]["num_images"] == 20
    assert doc["model"]["family"] == "dfgan"
    report = (out / "report.md").read_text()
    assert "FID" in report and "samples.png" in report and (out / "samples.png").is_file()
    # two gloo processes give the same numbers as one (generation and features sharded by image index)
    out2 = tmp_path / "eval2"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "t2igan.cli", "evaluate", "--model", str(model), "--metrics",
                           "fid,kid,is,r_precision", "--extractor", "random-tiny", "--num-images", "30",
                           "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
                           "--out", str(out2)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc2 = json.loads((out2 / "metrics.json").read_text())
    assert doc2["protocol"]["world_size"] == 2
    for key in ("fid", "kid", "inception_score", "r_precision"):
        assert doc2["metrics"][key] == pytest.approx(doc["metrics"][key], rel=1e-5, abs=1e-6), key
    # without Inception weights the default extractor is a clear error naming where it looked
    proc = subprocess.run([sys.executable, "-m", "t2igan.cli", "evaluate", "--model", str(model), "--metrics", "fid",
                           "--num-images", "4", "--device", "cpu", "--out", str(tmp_path / "e2")],
                          env={**env, "TORCH_HOME": str(tmp_path / "th")}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and str(tmp_path / "th") in proc.stderr
