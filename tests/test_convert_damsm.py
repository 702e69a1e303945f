"""Importing official DAMSM checkpoints: the fixture reproduced, prefixes, old files, strict errors, convert_damsm."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from conftest import official_fixtures_dir
from t2igan.convert import (
    convert_damsm,
    import_damsm_image_encoder,
    import_damsm_text_encoder,
    strip_module_prefix,
)
from t2igan.models.base import ModelLoadError
from t2igan.models.damsm import ImageEncoder, ImageEncoderConfig, TextEncoder
from t2igan.text.vocab import END_TOKEN, Vocabulary

FIXTURES = official_fixtures_dir()
TEXT_FIXTURE = FIXTURES / "damsm_text_encoder_vocab40.pt"
SHAPES = FIXTURES / "state_dict_shapes.json"

needs_text_fixture = pytest.mark.skipif(not TEXT_FIXTURE.is_file(), reason=f"{TEXT_FIXTURE} not available")
needs_shapes = pytest.mark.skipif(not SHAPES.is_file(), reason=f"{SHAPES} not available")


@pytest.fixture(scope="module")
def fixture_data() -> dict:
    if not TEXT_FIXTURE.is_file():
        pytest.skip(f"{TEXT_FIXTURE} not available")
    return torch.load(TEXT_FIXTURE, map_location="cpu", weights_only=True)


def write_official(path: Path, state: dict[str, torch.Tensor], *, prefix: bool = False,
                   drop_bn_counters: bool = False) -> Path:
    """Write a state dict the way the official scripts do (plain ``torch.save``), optionally 2018/DataParallel-style."""
    out = {}
    for k, v in state.items():
        if drop_bn_counters and k.endswith("num_batches_tracked"):
            continue
        out[("module." if prefix else "") + k] = v.clone()
    torch.save(out, path)
    return path


def vocabulary(n: int) -> Vocabulary:
    return Vocabulary([END_TOKEN] + [f"w{i}" for i in range(1, n)])


def write_captions_pickle(path: Path, vocab: Vocabulary) -> Path:
    ixtoword = vocab.ixtoword
    wordtoix = {w: i for i, w in ixtoword.items()}
    with open(path, "wb") as f:
        pickle.dump([[[1, 2, 3]], [[2, 1]], ixtoword, wordtoix], f, protocol=2)
    return path


# ------------------------------------------------------------------------------------------------ text encoder


def run_text(model: TextEncoder, captions: torch.Tensor, lengths: torch.Tensor):
    with torch.no_grad():
        return model(captions, lengths)


@needs_text_fixture
def test_fixture_reproduced(fixture_data):
    model = import_damsm_text_encoder(fixture_data["text_encoder"])
    assert not model.training
    assert (model.config.vocab_size, model.config.word_dim, model.config.hidden) == (40, 300, 256)
    words, sent = run_text(model, fixture_data["captions"], fixture_data["cap_lens"])
    assert words.shape == fixture_data["words_emb"].shape == (3, 256, 8)
    torch.testing.assert_close(words, fixture_data["words_emb"], atol=1e-4, rtol=0)
    torch.testing.assert_close(sent, fixture_data["sent_emb"], atol=1e-4, rtol=0)


@needs_text_fixture
@pytest.mark.parametrize("perm", [[2, 0, 1], [1, 2, 0], [2, 1, 0]])
def test_fixture_unsorted_batch_follows_permutation(fixture_data, perm):
    model = import_damsm_text_encoder(fixture_data["text_encoder"])
    perm_t = torch.tensor(perm)
    words, sent = run_text(model, fixture_data["captions"][perm_t], fixture_data["cap_lens"][perm_t])
    torch.testing.assert_close(words, fixture_data["words_emb"][perm_t], atol=1e-4, rtol=0)
    torch.testing.assert_close(sent, fixture_data["sent_emb"][perm_t], atol=1e-4, rtol=0)


@needs_text_fixture
def test_text_encoder_from_file_with_and_without_prefix(tmp_path: Path, fixture_data):
    plain = import_damsm_text_encoder(write_official(tmp_path / "text_encoder200.pth", fixture_data["text_encoder"]))
    prefixed = import_damsm_text_encoder(write_official(tmp_path / "dp.pth", fixture_data["text_encoder"], prefix=True))
    for k, v in plain.state_dict().items():
        assert torch.equal(v, prefixed.state_dict()[k]), k
        assert torch.equal(v, fixture_data["text_encoder"][k]), k
    a = run_text(plain, fixture_data["captions"], fixture_data["cap_lens"])
    b = run_text(prefixed, fixture_data["captions"], fixture_data["cap_lens"])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@needs_text_fixture
def test_text_encoder_vocab_size_checked(fixture_data):
    import_damsm_text_encoder(fixture_data["text_encoder"], vocab=vocabulary(40))
    with pytest.raises(ValueError, match=r"41.*40") as info:
        import_damsm_text_encoder(fixture_data["text_encoder"], vocab=vocabulary(41))
    assert "captions.pickle" in str(info.value)


@needs_text_fixture
def test_text_encoder_shape_mismatch_names_key_and_shapes(fixture_data):
    state = dict(fixture_data["text_encoder"])
    state["rnn.weight_ih_l0_reverse"] = torch.zeros(512, 299)
    with pytest.raises(ModelLoadError, match=r"rnn\.weight_ih_l0_reverse.*\(512, 299\).*\(512, 300\)"):
        import_damsm_text_encoder(state)


@needs_text_fixture
def test_text_encoder_missing_and_extra_keys(fixture_data):
    state = dict(fixture_data["text_encoder"])
    del state["rnn.bias_hh_l0_reverse"]
    with pytest.raises(ModelLoadError, match=r"missing 1 tensors: rnn\.bias_hh_l0_reverse"):
        import_damsm_text_encoder(state)
    state = dict(fixture_data["text_encoder"])
    del state["encoder.weight"]
    with pytest.raises(ModelLoadError, match=r"encoder\.weight"):
        import_damsm_text_encoder(state)
    state = dict(fixture_data["text_encoder"])
    state["rnn.weight_ih_l1"] = torch.zeros(512, 256)
    state["decoder.weight"] = torch.zeros(3)
    with pytest.raises(ModelLoadError, match=r"unexpected 2 tensors: rnn\.weight_ih_l1, decoder\.weight"):
        import_damsm_text_encoder(state)
    gru = {k: v[: 3 * 128] if k.startswith("rnn.") else v for k, v in fixture_data["text_encoder"].items()}
    with pytest.raises(ModelLoadError, match="GRU"):
        import_damsm_text_encoder(gru)


def test_text_encoder_not_a_state_dict(tmp_path: Path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ModelLoadError, match="state dict"):
        import_damsm_text_encoder(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        import_damsm_text_encoder(tmp_path / "absent.pth")


def test_strip_module_prefix():
    t = torch.zeros(1)
    assert list(strip_module_prefix({"module.a.b": t, "c": t})) == ["a.b", "c"]
    assert list(strip_module_prefix({"a.module.b": t})) == ["a.module.b"]
    with pytest.raises(ValueError, match="both"):
        strip_module_prefix({"module.a": t, "a": t})


# ------------------------------------------------------------------------------------------------ image encoder


@pytest.fixture(scope="module")
def official_image_encoder() -> ImageEncoder:
    """A random ImageEncoder with randomised BN statistics (eval mode), standing in for an official one."""
    torch.manual_seed(11)
    enc = ImageEncoder(ImageEncoderConfig())
    with torch.no_grad():
        for k, v in enc.state_dict().items():
            if k.endswith("running_mean"):
                v.normal_(0, 0.1)
            elif k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
            elif k.endswith("bn.bias"):
                v.normal_(0, 0.1)
            elif k.endswith("num_batches_tracked"):
                v.fill_(7)
    return enc.eval()


@pytest.fixture(scope="module")
def official_image_outputs(official_image_encoder: ImageEncoder) -> tuple[torch.Tensor, ...]:
    """(input [1, 3, 75, 75], regions, code) of the stand-in official encoder."""
    x = torch.rand(1, 3, 75, 75, generator=torch.Generator().manual_seed(12)) * 2 - 1
    with torch.no_grad():
        regions, code = official_image_encoder(x)
    return x, regions, code


@pytest.fixture(scope="module")
def official_image_state(official_image_encoder: ImageEncoder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in official_image_encoder.state_dict().items()}


@pytest.fixture(scope="module")
def official_image_file(tmp_path_factory: pytest.TempPathFactory, official_image_state) -> Path:
    path = tmp_path_factory.mktemp("official") / "image_encoder200.pth"
    return write_official(path, official_image_state, prefix=True, drop_bn_counters=True)


@needs_shapes
def test_image_encoder_keys_equal_official(official_image_encoder: ImageEncoder):
    official = json.loads(SHAPES.read_text())["damsm_image_encoder"]
    ours = {k: list(v.shape) for k, v in official_image_encoder.state_dict().items()}
    assert set(ours) == set(official)
    assert ours == official
    text = json.loads(SHAPES.read_text())["damsm_text_encoder_vocab5450"]
    assert {k: list(v.shape) for k, v in TextEncoder().state_dict().items()} == text


def test_image_encoder_import_old_prefixed_file(official_image_file: Path, official_image_state,
                                                official_image_outputs):
    raw = torch.load(official_image_file, weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    assert not any(k.endswith("num_batches_tracked") for k in raw)
    model = import_damsm_image_encoder(official_image_file)
    assert not model.training and model.config.embed_dim == 256
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert int(v) == 0, k
        else:
            assert torch.equal(v, official_image_state[k]), k
    with torch.no_grad():
        got = model(official_image_outputs[0])
    assert got[0].shape == (1, 256, 17, 17)
    assert torch.equal(got[0], official_image_outputs[1]) and torch.equal(got[1], official_image_outputs[2])


def test_image_encoder_import_errors(official_image_state):
    state = {k: v for k, v in official_image_state.items() if k != "Mixed_6b.branch7x7_2.bn.running_var"}
    with pytest.raises(ModelLoadError, match=r"Mixed_6b\.branch7x7_2\.bn\.running_var"):
        import_damsm_image_encoder(state)
    state = dict(official_image_state)
    state["emb_features.weight"] = torch.zeros(256, 769, 1, 1)
    with pytest.raises(ModelLoadError, match=r"emb_features\.weight.*\(256, 769, 1, 1\).*\(256, 768, 1, 1\)"):
        import_damsm_image_encoder(state)
    state = dict(official_image_state)
    state["fc.weight"] = torch.zeros(1000, 2048)
    with pytest.raises(ModelLoadError, match=r"unexpected 1 tensors: fc\.weight"):
        import_damsm_image_encoder(state)
    state = {k: v for k, v in official_image_state.items() if not k.startswith("emb_cnn_code")}
    with pytest.raises(ModelLoadError, match=r"emb_cnn_code\.weight"):
        import_damsm_image_encoder(state)


# ------------------------------------------------------------------------------------------------ convert_damsm


@needs_text_fixture
def test_convert_damsm_round_trip(tmp_path: Path, fixture_data, official_image_file: Path, official_image_state):
    text_path = write_official(tmp_path / "text_encoder200.pth", fixture_data["text_encoder"])
    vocab = vocabulary(40)
    captions = write_captions_pickle(tmp_path / "captions.pickle", vocab)
    out = convert_damsm(text_path, official_image_file, captions, out_dir=tmp_path / "damsm")
    assert out == tmp_path / "damsm"

    text = TextEncoder.from_pretrained(out / "text_encoder")
    for k, v in text.state_dict().items():
        assert torch.equal(v, fixture_data["text_encoder"][k]), k
    words, sent = run_text(text.eval(), fixture_data["captions"], fixture_data["cap_lens"])
    torch.testing.assert_close(sent, fixture_data["sent_emb"], atol=1e-4, rtol=0)

    image = ImageEncoder.from_pretrained(out / "image_encoder")
    assert image.config == ImageEncoderConfig(backbone="inception_v3", embed_dim=256)
    for k, v in image.state_dict().items():
        want = torch.zeros_like(v) if k.endswith("num_batches_tracked") else official_image_state[k]
        assert torch.equal(v, want), k
    assert Vocabulary.load(out / "vocab.json") == vocab


@needs_text_fixture
def test_convert_damsm_vocab_mismatch_writes_nothing(tmp_path: Path, fixture_data):
    text_path = write_official(tmp_path / "text_encoder.pth", fixture_data["text_encoder"])
    captions = write_captions_pickle(tmp_path / "captions.pickle", vocabulary(39))
    with pytest.raises(ValueError, match=r"39.*40"):
        convert_damsm(text_path, None, captions, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    out = convert_damsm(text_path, out_dir=tmp_path / "text_only")
    assert (out / "text_encoder").is_dir()
    assert not (out / "image_encoder").exists() and not (out / "vocab.json").exists()
