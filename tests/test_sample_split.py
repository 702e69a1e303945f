"""`t2igan sample --split`: one image per caption of a split, the same files in 1 or 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2igan.cli import main
from t2igan.data import DataConfig, load_corpus
from t2igan.data.synthetic import SynthBirdsSpec, prepare_synthbirds
from t2igan.models.damsm import TextEncoder, TextEncoderConfig
from t2igan.models.registry import write_model_dir
from t2igan.models.ssagan import SSAGANGenerator, SSAGANGeneratorConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("split")
    data = base / "sb"
    prepare_synthbirds(data, SynthBirdsSpec(size=32, train=12, test=6, seed=2), workers=1, progress=False)
    vocab = load_corpus(DataConfig(kind="synthbirds", root=str(data))).vocab
    torch.manual_seed(0)
    te = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), word_dim=16, hidden=32))
    g = SSAGANGenerator(SSAGANGeneratorConfig(ngf=4, nz=8, cond_dim=32, image_size=64, mask_hidden=8))
    model = write_model_dir(base / "model", "ssagan", {"generator": g, "text_encoder": te}, vocab)
    return data, model


def test_one_process(setup, tmp_path):
    data, model = setup
    out = tmp_path / "o"
    assert main(["sample", "--model", str(model), "--split", "test", "--data", str(data),
                 "--captions-per-image", "2", "--seed", "3", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))  # 6 test images x 2 captions
    assert {r["caption_index"] for r in rows} == {0, 1}
    assert all((out / r["file"]).is_file() for r in rows)
    assert Image.open(out / rows[0]["file"]).size == (64, 64)
    assert not list(out.glob("manifest.rank*"))


def test_two_processes_write_the_same_files(setup, tmp_path):
    data, model = setup
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["sample", "--model", str(model), "--split", "test", "--data", str(data), "--captions-per-image", "2",
            "--seed", "3", "--batch-size", "5"]
    assert main([*args, "--out", str(one)]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "t2igan.cli", *args, "--out", str(two)], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (one / "manifest.jsonl").read_text() == (two / "manifest.jsonl").read_text()
    for row in map(json.loads, (one / "manifest.jsonl").read_text().splitlines()):
        a = np.asarray(Image.open(one / row["file"]))
        b = np.asarray(Image.open(two / row["file"]))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, row["file"]


def test_split_needs_data(setup, tmp_path, capsys):
    _, model = setup
    assert main(["sample", "--model", str(model), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
