"""The SSA-GAN model shipped inside the package (src/t2igan/pretrained/synthbirds): works with no set-up."""

from __future__ import annotations

import json

import numpy as np

from t2igan.models.registry import PRETRAINED_ROOT, pretrained_names, read_model_dir
from t2igan.pipeline import T2IPipeline

SHIPPED = PRETRAINED_ROOT / "synthbirds"


def test_it_is_there_with_its_record():
    assert "synthbirds" in pretrained_names()
    for name in ("TRAINING.md", "run_config.json", "metrics.json", "pipeline.json", "vocab.json"):
        assert (SHIPPED / name).is_file(), name
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"{size / 2**20:.1f} MB"
    meta = json.loads((SHIPPED / "pipeline.json").read_text())
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    # the metrics are those of this very snapshot, and the run config is the one it was trained with
    assert metrics["model"]["trained"]["step"] == meta["trained"]["step"]
    run_config = json.loads((SHIPPED / "run_config.json").read_text())
    assert run_config["family"] == meta["family"] == "ssagan"
    assert run_config["data"]["image_size"] == meta["data"]["image_size"] == 64
    assert meta["trained"]["run"] in (SHIPPED / "TRAINING.md").read_text()
    m = metrics["metrics"]
    assert 0 < m["attr_acc"] <= 1 and m["ceiling_attr_acc"] > 0.9
    # no path of the machine it was trained on
    assert meta["data"]["root"] is None and meta["damsm"] is None and "/" not in meta["trained"]["run"]
    assert metrics["model"]["path"] == metrics["model"]["damsm"] == "synthbirds"
    assert "/" not in metrics["model"]["trained"]["run"]
    records = [run_config] + [json.loads(x) for x in (SHIPPED / "resumes.jsonl").read_text().splitlines()
                              if (SHIPPED / "resumes.jsonl").is_file()]

    def strings(obj):
        if isinstance(obj, dict):
            return [s for v in obj.values() for s in strings(v)]
        return [s for v in obj for s in strings(v)] if isinstance(obj, list) else [obj]

    absolute = [s for r in records for s in strings(r) if isinstance(s, str) and s.startswith("/")]
    assert not absolute, absolute


def test_from_pretrained_by_name():
    pipe = T2IPipeline.from_pretrained("synthbirds")
    prompts = ["a small bird with a red crown and blue wings", "a large yellow bird with a long beak"]
    out = pipe(prompts, seed=3, num_images_per_prompt=2)
    assert out.tensors.shape == (4, 3, 64, 64) and len(out.masks) == 5
    assert not any(out.unknown_words)
    # one image at a time: the same noise per image, the same pixels; another seed: other images
    again = pipe(prompts, seed=3, num_images_per_prompt=2, batch_size=1)
    assert np.abs(again.tensors.numpy() - out.tensors.numpy()).max() < 1e-5
    assert np.abs(pipe(prompts, seed=4).tensors.numpy() - out.tensors[::2].numpy()).max() > 0.1
    assert read_model_dir("synthbirds", components=("image_encoder",)).components["image_encoder"] is not None


def test_generate_needs_no_model_argument(tmp_path, monkeypatch, capsys):
    from t2igan.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a small bird with a red crown and blue wings", "--n", "2"]) == 0
    out = tmp_path / "t2igan-generated"
    assert sorted(p.name for p in out.glob("p*.png")) == ["p000_00.png", "p000_01.png"]
    assert len(list((out / "masks").glob("*.png"))) == 2
    assert "t2igan-generated" in capsys.readouterr().out


def test_unknown_words_are_named(tmp_path, capsys):
    from t2igan.cli import main

    assert main(["generate", "a zebra bird", "--n", "1", "--out", str(tmp_path / "o")]) == 0
    assert "zebra" in capsys.readouterr().err
    assert main(["generate", "zebra giraffe", "--out", str(tmp_path / "o")]) == 2
    assert "no word of the prompt" in capsys.readouterr().err


def test_reads_whole_synthbirds_captions():
    # trained (from step 2884) and evaluated on whole captions: the longest SynthBirds caption has 39 words, and
    # its record says so in both places the export reads
    meta = json.loads((SHIPPED / "pipeline.json").read_text())
    run_config = json.loads((SHIPPED / "run_config.json").read_text())
    assert meta["words_num"] == meta["data"]["words_num"] == run_config["data"]["words_num"] >= 39
    pipe = T2IPipeline.from_pretrained("synthbirds")
    assert pipe.words_num == meta["words_num"]
    prompt = ("this small songbird has a grey body, a red crown, a yellow breast and belly, blue wing feathers, "
              "green tail feathers and a long black beak")
    enc = pipe.vocab.encode_prompt(prompt, pipe.words_num)
    assert not enc.truncated and len(enc.words) > 18 and "beak" in enc.words[18:]  # the beak, past word 18, is kept
