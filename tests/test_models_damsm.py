"""DAMSM encoders: shapes, masking, dropout, unsorted batches, frozen trunk, training, save/load, trunk loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from t2igan.models.base import ModelLoadError
from t2igan.models.damsm import (
    INCEPTION_TRUNK,
    INCEPTION_WEIGHTS_FILES,
    ImageEncoder,
    ImageEncoderConfig,
    TextEncoder,
    TextEncoderConfig,
    load_inception_trunk,
)


def _captions(lengths: list[int], vocab: int, width: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    caps = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        caps[i, :n] = torch.randint(1, vocab, (n,), generator=g)
    return caps


@pytest.fixture(scope="module")
def inception() -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder(ImageEncoderConfig())


# ------------------------------------------------------------------------------------------------ text encoder


def test_text_encoder_shapes_and_zero_padding():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(vocab_size=30, word_dim=12, hidden=16)).eval()
    lengths = [5, 2, 7, 3]
    caps = _captions(lengths, 30, width=9)
    words, sent = enc(caps, torch.tensor(lengths))
    assert words.shape == (4, 16, 7)  # T' = longest length, not the padded width 9
    assert sent.shape == (4, 16)
    for i, n in enumerate(lengths):
        assert torch.count_nonzero(words[i, :, n:]) == 0
        assert torch.count_nonzero(words[i, :, :n]) > 0
    # sent = [final forward state, final backward state]: the forward half is the output at the last word,
    # the backward half the backward output at the first word
    for i, n in enumerate(lengths):
        torch.testing.assert_close(sent[i, :8], words[i, :8, n - 1])
        torch.testing.assert_close(sent[i, 8:], words[i, 8:, 0])


def test_text_encoder_default_config_matches_official_sizes():
    enc = TextEncoder()
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert shapes["encoder.weight"] == (5450, 300)
    assert shapes["rnn.weight_hh_l0"] == (512, 128)
    assert shapes["rnn.weight_ih_l0_reverse"] == (512, 300)
    assert len(shapes) == 9
    w = enc.encoder.weight
    assert w.abs().max() <= 0.1


def test_text_encoder_unsorted_batch_matches_items_alone():
    torch.manual_seed(1)
    enc = TextEncoder(TextEncoderConfig(vocab_size=25, word_dim=10, hidden=12)).eval()
    lengths = [2, 6, 4, 6, 1]  # not sorted
    caps = _captions(lengths, 25, seed=3)
    words, sent = enc(caps, lengths)  # a plain list of lengths works too
    for i, n in enumerate(lengths):
        w1, s1 = enc(caps[i:i + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(words[i:i + 1, :, :n], w1, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(sent[i:i + 1], s1, atol=1e-6, rtol=1e-5)


def test_text_encoder_dropout_only_in_train_mode():
    torch.manual_seed(2)
    enc = TextEncoder(TextEncoderConfig(vocab_size=20, word_dim=32, hidden=16, dropout=0.5))
    caps = _captions([4, 3], 20)
    lens = torch.tensor([4, 3])
    enc.eval()
    a = enc(caps, lens)
    b = enc(caps, lens)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    enc.train()
    c = enc(caps, lens)
    d = enc(caps, lens)
    assert not torch.equal(c[1], d[1])
    assert not torch.equal(c[1], a[1])


def test_text_encoder_rejects_bad_lengths():
    enc = TextEncoder(TextEncoderConfig(vocab_size=20, word_dim=8, hidden=8)).eval()
    caps = _captions([3, 1, 2], 20)
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        enc(caps, torch.tensor([3, 0, 2]))
    with pytest.raises(ValueError, match=r"exceed"):
        enc(caps, torch.tensor([4, 1, 2]))
    with pytest.raises(ValueError, match=r"2 lengths for a batch of 3"):
        enc(caps, torch.tensor([3, 1]))


def test_text_encoder_config_validation():
    with pytest.raises(ValueError, match="even"):
        TextEncoderConfig(hidden=255)
    assert TextEncoderConfig.from_dict(TextEncoderConfig(vocab_size=7).to_dict()) == TextEncoderConfig(vocab_size=7)


def test_text_encoder_save_load_bit_exact(tmp_path: Path):
    torch.manual_seed(3)
    enc = TextEncoder(TextEncoderConfig(vocab_size=40, word_dim=300, hidden=256)).eval()
    enc.save_pretrained(tmp_path / "te")
    back = TextEncoder.from_pretrained(tmp_path / "te").eval()
    assert back.config == enc.config
    for k, v in enc.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    caps = _captions([5, 3], 40)
    assert torch.equal(enc(caps, [5, 3])[1], back(caps, [5, 3])[1])


# ------------------------------------------------------------------------------------------------ image encoder


def test_light_encoder_shapes_and_region_shape():
    cfg = ImageEncoderConfig.light(input_size=64, width=16)
    enc = ImageEncoder(cfg).eval()
    assert enc.region_shape == (8, 8)
    regions, code = enc(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert regions.shape == (3, 256, 8, 8)
    assert code.shape == (3, 256)
    # other image sizes are resized to input_size first
    regions, code = enc(torch.rand(2, 3, 48, 80) * 2 - 1)
    assert regions.shape == (2, 256, 8, 8)
    enc32 = ImageEncoder(ImageEncoderConfig.light(input_size=36, width=8, embed_dim=32)).eval()
    regions, code = enc32(torch.zeros(1, 3, 36, 36))
    assert tuple(regions.shape[-2:]) == enc32.region_shape == (5, 5)
    assert code.shape == (1, 32)


def test_light_encoder_trunk_is_trainable_even_with_freeze_trunk():
    enc = ImageEncoder(ImageEncoderConfig(backbone="light", input_size=32, light_width=8, freeze_trunk=True))
    assert not enc.trunk_frozen
    assert all(p.requires_grad for p in enc.parameters())
    enc.train()
    assert all(m.training for m in enc.modules())


def test_light_encoder_learns():
    torch.manual_seed(4)
    enc = ImageEncoder(ImageEncoderConfig.light(input_size=32, width=8, embed_dim=16)).train()
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    target = torch.randn(16, 16)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        regions, code = enc(x)
        loss = torch.nn.functional.mse_loss(code, target) + regions.pow(2).mean() * 1e-3
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_light_encoder_save_load_bit_exact(tmp_path: Path):
    torch.manual_seed(5)
    enc = ImageEncoder(ImageEncoderConfig.light(input_size=32, width=8, embed_dim=16))
    enc.train()
    enc(torch.rand(4, 3, 32, 32))  # move the BN running statistics away from their initial values
    enc.eval()
    enc.save_pretrained(tmp_path / "light")
    back = ImageEncoder.from_pretrained(tmp_path / "light").eval()
    assert back.config == enc.config
    for k, v in enc.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    x = torch.rand(2, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(enc(x), back(x)))


def test_inception_encoder_shapes_and_frozen_trunk(inception: ImageEncoder):
    enc = inception
    assert enc.region_shape == (17, 17)
    enc.train()
    assert enc.training
    for name in INCEPTION_TRUNK:
        trunk_part = getattr(enc, name)
        assert not any(m.training for m in trunk_part.modules()), name
    assert not any(p.requires_grad for p in enc.trunk_parameters())
    assert all(p.requires_grad for p in enc.projection_parameters())
    assert {n for n, p in enc.named_parameters() if p.requires_grad} == {
        "emb_features.weight", "emb_cnn_code.weight", "emb_cnn_code.bias"}
    assert enc.emb_features.weight.abs().max() <= 0.1 and enc.emb_cnn_code.weight.abs().max() <= 0.1

    before = enc.Mixed_6e.branch_pool.bn.running_mean.clone()
    x = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    regions, code = enc(x)  # train mode, but the frozen trunk's BN statistics must not move
    assert regions.shape == (1, 256, 17, 17) and code.shape == (1, 256)
    assert torch.equal(before, enc.Mixed_6e.branch_pool.bn.running_mean)
    code.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the images through the trunk
    assert enc.emb_cnn_code.weight.grad is not None
    enc.zero_grad(set_to_none=True)
    enc.eval()


def test_inception_unfrozen_trunk_trains():
    enc = ImageEncoder(ImageEncoderConfig(freeze_trunk=False))
    assert all(p.requires_grad for p in enc.parameters())
    enc.train()
    assert enc.Mixed_7c.branch_pool.bn.training


def test_inception_config_validation():
    with pytest.raises(ValueError, match="8x8"):
        ImageEncoderConfig(input_size=128)
    with pytest.raises(ValueError):
        ImageEncoderConfig.from_dict({"backbone": "resnet"})


def test_inception_save_load_bit_exact(tmp_path: Path, inception: ImageEncoder):
    inception.save_pretrained(tmp_path / "inc")
    back = ImageEncoder.from_pretrained(tmp_path / "inc")
    assert back.config == inception.config
    own, got = inception.state_dict(), back.state_dict()
    assert list(own) == list(got)
    for k, v in own.items():
        assert torch.equal(v, got[k]), k
    assert not any(p.requires_grad for p in back.trunk_parameters())
    assert not back.Conv2d_1a_3x3.training


# ------------------------------------------------------------------------------------------------ trunk loading


@pytest.fixture(scope="module")
def torchvision_inception_state() -> dict[str, torch.Tensor]:
    from torchvision.models import inception_v3

    torch.manual_seed(6)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = net.state_dict()
    for k, v in state.items():  # make the BN statistics distinguishable from a fresh module
        if k.endswith("running_mean"):
            v.normal_(0, 0.1)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
    return state


def test_load_inception_trunk_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             inception: ImageEncoder,
                                             torchvision_inception_state: dict[str, torch.Tensor]):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    expected = [checkpoints / name for name in INCEPTION_WEIGHTS_FILES]

    with pytest.raises(FileNotFoundError) as info:
        load_inception_trunk(inception)
    for p in expected:
        assert str(p) in str(info.value)

    # an old-style file without BN counters, as torchvision caches it; AuxLogits / fc are ignored
    state = {k: v for k, v in torchvision_inception_state.items() if not k.endswith("num_batches_tracked")}
    assert any(k.startswith("AuxLogits.") for k in state) and "fc.weight" in state
    checkpoints.mkdir(parents=True)
    torch.save(state, expected[0])
    proj_before = inception.emb_cnn_code.weight.clone()
    used = load_inception_trunk(inception)
    assert used == expected[0]
    own = inception.state_dict()
    for k in ("Conv2d_1a_3x3.conv.weight", "Mixed_6e.branch7x7dbl_5.bn.running_var", "Mixed_7c.branch_pool.bn.bias"):
        assert torch.equal(own[k], torchvision_inception_state[k]), k
    assert torch.equal(inception.emb_cnn_code.weight, proj_before)

    # an explicit path that does not exist is named
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_inception_trunk(inception, missing)


def test_load_inception_trunk_errors(tmp_path: Path, inception: ImageEncoder,
                                     torchvision_inception_state: dict[str, torch.Tensor]):
    bad = {"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ModelLoadError, match=r"Conv2d_1a_3x3\.conv\.weight.*\(32, 3, 5, 5\).*\(32, 3, 3, 3\)"):
        load_inception_trunk(inception, tmp_path / "bad.pth")
    partial = {k: torchvision_inception_state[k] for k in ("Conv2d_1a_3x3.conv.weight",)}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ModelLoadError, match=r"missing .*Conv2d_1a_3x3\.bn\.weight"):
        load_inception_trunk(inception, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="inception_v3"):
        load_inception_trunk(ImageEncoder(ImageEncoderConfig.light(input_size=32, width=4)), tmp_path / "bad.pth")


def test_encode_gives_both_embeddings_and_the_padding_mask():
    torch.manual_seed(0)
    te = TextEncoder(TextEncoderConfig(vocab_size=12, word_dim=8, hidden=16)).eval()
    caps = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8], [9, 0, 0, 0]])
    lengths = torch.tensor([2, 4, 1])
    cond = te.encode(caps, lengths)
    words, sent = te(caps, lengths)
    assert torch.equal(cond.sent_emb, sent) and torch.equal(cond.words_emb, words)
    assert cond.word_mask.tolist() == [[False, False, True, True], [False] * 4, [False, True, True, True]]
    # shorter batches: the mask is as wide as the longest caption, not the padded width
    short = te.encode(torch.tensor([[3, 4, 0, 0, 0]]), [2])
    assert short.word_mask.tolist() == [[False, False]]


def test_light_encoder_max_pooled_code(tmp_path: Path):
    torch.manual_seed(0)
    enc = ImageEncoder(ImageEncoderConfig(backbone="light", input_size=32, light_width=8, embed_dim=16,
                                          light_pool="max")).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    _, code = enc(x)
    with torch.no_grad():
        h = enc.stage4(enc.stage3(enc.stage2(enc.stage1(enc.stem(x)))))
        torch.testing.assert_close(code, enc.emb_cnn_code(h.amax(dim=(2, 3))))
        assert not torch.allclose(code, enc.emb_cnn_code(h.mean(dim=(2, 3))))
    enc.save_pretrained(tmp_path / "max")
    back = ImageEncoder.from_pretrained(tmp_path / "max").eval()
    assert back.config.light_pool == "max"
    assert torch.equal(back(x)[1], code)
