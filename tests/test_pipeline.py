"""T2IPipeline and `t2igan sample` on tiny random models written in the exported-model layout."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import write_tiny_model_dir
from t2igan.models.base import ModelLoadError
from t2igan.models.registry import read_model_dir
from t2igan.pipeline import T2IPipeline, image_noise
from t2igan.text.vocab import PromptError, VocabularyWarning

WORDS = ["<end>", "a", "small", "bird", "with", "red", "blue", "crown", "wings", "large"]


@pytest.fixture(scope="module", params=["ssagan", "dfgan"])
def model_dir(request, tmp_path_factory):
    family = request.param
    return write_tiny_model_dir(tmp_path_factory.mktemp(family) / "model", family, WORDS)


def test_shapes_masks_and_seeds(model_dir):
    pipe = T2IPipeline.from_pretrained(model_dir)
    out = pipe(["a small bird with red", "a large blue bird"], seed=3, num_images_per_prompt=2)
    assert out.tensors.shape == (4, 3, 64, 64)
    assert len(out.images) == 4 and out.images[0].size == (64, 64)
    assert out.seeds == [(3, 0), (3, 1), (3, 2), (3, 3)]
    assert out.prompts[2] == "a large blue bird"
    if pipe.family == "ssagan":
        assert [m.shape[-1] for m in out.masks] == [4, 8, 16, 32, 64]
        assert all(m.shape[0] == 4 and 0 <= float(m.min()) and float(m.max()) <= 1 for m in out.masks)
    else:
        assert out.masks is None
    # different noise for different images of the same prompt
    assert not torch.equal(out.tensors[0], out.tensors[1])


def test_an_image_depends_only_on_seed_and_index(model_dir):
    pipe = T2IPipeline.from_pretrained(model_dir)
    prompts = ["a small bird", "red crown", "blue wings"]
    together = pipe(prompts, seed=11, num_images_per_prompt=2, batch_size=16).tensors
    one_by_one = pipe(prompts, seed=11, num_images_per_prompt=2, batch_size=1).tensors
    assert torch.allclose(together, one_by_one, atol=1e-5)
    again = pipe(prompts, seed=11, num_images_per_prompt=2, batch_size=4).tensors
    assert torch.allclose(together, again, atol=1e-5)
    other = pipe(prompts, seed=12, num_images_per_prompt=2).tensors
    assert not torch.allclose(together, other)


def test_truncated_noise_is_bounded_and_scaled():
    z = image_noise(0, 5, 10000, truncation=0.88)
    assert float(z.abs().max()) <= 0.88 * 2 + 1e-6
    assert torch.equal(image_noise(0, 5, 100), image_noise(0, 5, 100))
    assert not torch.equal(image_noise(0, 5, 100), image_noise(0, 6, 100))


def test_unknown_words_are_named_and_dropped(model_dir):
    pipe = T2IPipeline.from_pretrained(model_dir)
    with pytest.warns(VocabularyWarning, match="zebra"):
        out = pipe("a zebra bird")
    assert out.unknown_words == [["zebra"]] and out.words == [["a", "bird"]]
    with pytest.warns(VocabularyWarning, match="zebra"):  # again: every call names its dropped words
        pipe("a zebra bird")
    with warnings.catch_warnings(record=True) as seen:  # a caller that ignores them is obeyed
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=VocabularyWarning)
        assert pipe("a zebra bird").unknown_words == [["zebra"]]
    assert not [w for w in seen if issubclass(w.category, VocabularyWarning)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PromptError, match="zebra"):
            pipe("zebra giraffe")
    with pytest.raises(PromptError):
        pipe("   ")
    with pytest.raises(PromptError):
        pipe([])


def test_model_dir_errors_name_the_file(model_dir, tmp_path):
    import shutil

    bad = tmp_path / "m"
    shutil.copytree(model_dir, bad)
    weights = bad / "generator" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="generator/model.safetensors"):
        T2IPipeline.from_pretrained(bad)
    shutil.rmtree(bad)
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "generator" / "config.json").read_text())
    cfg["ngf_typo"] = 3
    (bad / "generator" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="ngf_typo"):
        T2IPipeline.from_pretrained(bad)
    (bad / "pipeline.json").unlink()
    with pytest.raises(ModelLoadError, match="pipeline.json"):
        T2IPipeline.from_pretrained(bad)
    shutil.rmtree(bad)
    shutil.copytree(model_dir, bad)
    (bad / "vocab.json").write_text(json.dumps({"words": WORDS[:-1]}))
    with pytest.raises(ModelLoadError, match="vocab.json"):
        read_model_dir(bad)


def test_sample_command_writes_images_grid_and_masks(model_dir, tmp_path):
    from PIL import Image

    from t2igan.cli import main

    out = tmp_path / "samples"
    assert main(["sample", "--model", str(model_dir), "--prompt", "a small bird", "--prompt", "red wings",
                 "--n", "2", "--seed", "5", "--masks", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("p*.png")) == ["p000_00.png", "p000_01.png", "p001_00.png",
                                                          "p001_01.png"]
    assert Image.open(out / "grid.png").width > 64
    records = [json.loads(x) for x in (out / "prompts.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3] and records[3]["prompt"] == "red wings"
    pipe = T2IPipeline.from_pretrained(model_dir)
    again = pipe(["a small bird", "red wings"], seed=5, num_images_per_prompt=2).images[3]
    import numpy as np

    assert np.array_equal(np.asarray(again), np.asarray(Image.open(out / "p001_01.png").convert("RGB")))
    if pipe.family == "ssagan":
        strip = Image.open(out / "masks" / "p000_00.png")
        assert strip.width == 6 * 128  # the image and 5 masks
    else:
        assert not (out / "masks").exists()


def test_sample_command_bad_input(model_dir, tmp_path, capsys):
    from t2igan.cli import main

    assert main(["sample", "--model", str(tmp_path / "missing"), "--prompt", "a bird", "--out",
                 str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n\n")
    assert main(["sample", "--model", str(model_dir), "--prompts-file", str(empty), "--out",
                 str(tmp_path / "o")]) == 2
    assert "no prompt" in capsys.readouterr().err


def test_pipeline_equals_a_plain_generator_call(model_dir):
    """The pipeline's channels_last generator gives the plain module's numbers."""
    md = read_model_dir(model_dir)
    pipe = T2IPipeline.from_pretrained(model_dir)
    out = pipe(["a small bird"], seed=4, num_images_per_prompt=2)
    te, g = md.components["text_encoder"].eval(), md.components["generator"].eval()
    ids = torch.tensor([[WORDS.index("a"), WORDS.index("small"), WORDS.index("bird")]] * 2)
    with torch.no_grad():
        _, sent = te(ids, torch.tensor([3, 3]))
        noise = torch.stack([image_noise(4, i, g.config.nz) for i in range(2)])
        ref = g(noise, sent)
    ref = ref[0] if isinstance(ref, tuple) else ref
    assert torch.allclose(out.tensors, ref, atol=1e-5)


def test_generate_command_reports_unknown_words_once(model_dir, tmp_path, capsys):
    from t2igan.cli import main

    out = tmp_path / "gen"
    assert main(["generate", "a small bird with red wingz", "a blue bird", "--model", str(model_dir),
                 "--n", "3", "--out", str(out)]) == 0
    assert len(list(out.glob("p*.png"))) == 6
    err = capsys.readouterr().err
    assert err.count("wingz") == 1 and "prompt 1" in err  # named once, by the CLI, not again as a warning
    assert (out / "masks").is_dir() == (T2IPipeline.from_pretrained(model_dir).family == "ssagan")
    assert main(["generate", "  ", "--model", str(model_dir), "--out", str(out)]) == 2
    assert "empty" in capsys.readouterr().err


def test_a_shipped_model_is_found_by_name(model_dir, tmp_path, monkeypatch):
    import shutil

    from t2igan.models import registry

    root = tmp_path / "pretrained"
    shutil.copytree(model_dir, root / "tinybirds")
    (root / "not-a-model").mkdir()
    monkeypatch.setattr(registry, "PRETRAINED_ROOT", root)
    assert registry.pretrained_names() == ["tinybirds"]
    pipe = T2IPipeline.from_pretrained("tinybirds")
    ref = T2IPipeline.from_pretrained(model_dir)
    assert torch.equal(pipe(["a small bird"], seed=2).tensors, ref(["a small bird"], seed=2).tensors)
    with pytest.raises(ModelLoadError, match="shipped: tinybirds"):
        T2IPipeline.from_pretrained("not-a-model")
    # a directory of that name in the working directory wins over the shipped model
    monkeypatch.chdir(tmp_path)
    shutil.copytree(model_dir, tmp_path / "tinybirds")
    assert registry.resolve_model_dir("tinybirds").resolve() == (tmp_path / "tinybirds").resolve()
