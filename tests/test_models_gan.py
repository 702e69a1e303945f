"""SSA-GAN and DF-GAN networks: official fixtures, official key layouts, shapes, save/load, batch independence,
the two SSACN formulations, gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import (
    assert_released_shapes,
    load_official_fixture,
    max_abs_err,
    randomize_module,
)
from t2igan.config import ConfigError
from t2igan.models.base import load_state_strict
from t2igan.models.dfgan import (
    DFGANDiscriminator,
    DFGANDiscriminatorConfig,
    DFGANGenerator,
    DFGANGeneratorConfig,
    dfgan_generator_channels,
)
from t2igan.models.layers import AffineMLP, ResDownBlock, UnusedConv1x1
from t2igan.models.ssagan import (
    SSACNAffine,
    SSACNBlock,
    SSAGANDiscriminator,
    SSAGANDiscriminatorConfig,
    SSAGANGenerator,
    SSAGANGeneratorConfig,
    ssagan_generator_channels,
)

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


_fixture = load_official_fixture




def _inputs(batch: int, nz: int = 100, cond_dim: int = 256, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, nz, generator=g), torch.randn(batch, cond_dim, generator=g)




# ------------------------------------------------------------------------------------------------ official fixtures


def test_ssagan_reproduces_official_outputs():
    fx = _fixture("ssagan_ngf8.pt")
    cfg = fx["config"]
    G = SSAGANGenerator(SSAGANGeneratorConfig(ngf=cfg["ngf"], nz=cfg["nz"], cond_dim=cfg["cond_dim"])).eval()
    D = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=cfg["ndf"], cond_dim=cfg["cond_dim"])).eval()
    assert list(G.state_dict()) == list(fx["netG"])  # same keys, same order
    assert list(D.state_dict()) == list(fx["netD"])
    load_state_strict(G, fx["netG"], source="ssagan netG")
    load_state_strict(D, fx["netD"], source="ssagan netD")
    with torch.no_grad():
        image, masks = G(fx["noise"], fx["sent_emb"])
        features = D(fx["image"])
        logits = D(fx["image"], fx["sent_emb"])
        logits_from_features = D(features=fx["d_features"], sent_emb=fx["sent_emb"])
    assert max_abs_err(image, fx["image"]) < TOL
    assert len(masks) == len(fx["masks"]) == 7
    for ours, theirs in zip(masks, fx["masks"]):
        assert max_abs_err(ours, theirs) < TOL
    assert max_abs_err(features, fx["d_features"]) < TOL
    assert max_abs_err(logits, fx["d_logits"].reshape(-1)) < TOL
    assert max_abs_err(logits_from_features, fx["d_logits"].reshape(-1)) < TOL


def test_dfgan_reproduces_official_outputs():
    fx = _fixture("dfgan_ngf8.pt")
    cfg = fx["config"]
    G = DFGANGenerator(DFGANGeneratorConfig(ngf=cfg["ngf"], nz=cfg["nz"], cond_dim=cfg["cond_dim"],
                                            image_size=cfg["imsize"])).eval()
    D = DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=cfg["ndf"], cond_dim=cfg["cond_dim"],
                                                    image_size=cfg["imsize"])).eval()
    assert list(G.state_dict()) == list(fx["netG"])
    assert list(D.D.state_dict()) == list(fx["netD"])
    assert list(D.C.state_dict()) == list(fx["netC"])
    load_state_strict(G, fx["netG"], source="dfgan netG")
    load_state_strict(D.D, fx["netD"], source="dfgan netD")
    load_state_strict(D.C, fx["netC"], source="dfgan netC")
    with torch.no_grad():
        image = G(fx["noise"], fx["sent_emb"])
        features = D(fx["image"])
        logits = D(fx["image"], fx["sent_emb"])
    assert max_abs_err(image, fx["image"]) < TOL
    assert max_abs_err(features, fx["d_features"]) < TOL
    assert max_abs_err(logits, fx["d_logits"].reshape(-1)) < TOL


# ------------------------------------------------------------------------------------------------ released key layouts


def _ssagan_g(size: int) -> nn.Module:
    return SSAGANGenerator(SSAGANGeneratorConfig(ngf=size))


def _ssagan_d(size: int) -> nn.Module:
    return SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=size))


RELEASED = {
    "ssagan_netG_ngf64": lambda: _ssagan_g(64),
    "ssagan_netG_ngf32": lambda: _ssagan_g(32),
    "ssagan_netD_ndf64": lambda: _ssagan_d(64),
    "ssagan_netD_ndf32": lambda: _ssagan_d(32),
    "dfgan_netG_ngf32_256": lambda: DFGANGenerator(DFGANGeneratorConfig(ngf=32, image_size=256)),
    "dfgan_netD_ndf32_256": lambda: DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=32, image_size=256)).D,
    "dfgan_netC_ndf32": lambda: DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=32)).C,
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_keys_and_shapes_equal_released_checkpoints(name):
    assert_released_shapes(name, RELEASED[name])


def test_dfgan_discriminator_wraps_both_official_modules():
    D = DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=4, image_size=64))
    keys = list(D.state_dict())
    assert keys == [f"D.{k}" for k in D.D.state_dict()] + [f"C.{k}" for k in D.C.state_dict()]


def test_unused_official_shortcuts_are_buffers_not_parameters():
    block = ResDownBlock(8, 8)
    assert isinstance(block.conv_s, UnusedConv1x1)
    assert {"conv_s.weight", "conv_s.bias"} <= set(block.state_dict())
    assert not any(n.startswith("conv_s") for n, _ in block.named_parameters())
    assert isinstance(ResDownBlock(4, 8).conv_s, nn.Conv2d)


# ------------------------------------------------------------------------------------------------ shapes and configs


@pytest.mark.parametrize("size", [64, 128, 256])
def test_ssagan_shapes(size):
    torch.manual_seed(0)
    ngf = 4
    G = SSAGANGenerator(SSAGANGeneratorConfig(ngf=ngf, image_size=size)).eval()
    D = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=ngf, image_size=size)).eval()
    blocks = int(math.log2(size)) - 1
    plan = ssagan_generator_channels(ngf, size)
    assert len(plan) == blocks and plan == ssagan_generator_channels(ngf, 256)[:blocks]
    assert plan[-1][1] == {64: 4 * ngf, 128: 2 * ngf, 256: ngf}[size]
    assert len(G.block_names) == blocks and not hasattr(G.blocks[-1], "conv_mask")
    noise, sent = _inputs(2)
    with torch.no_grad():
        image, masks = G(noise, sent)
        features = D(image)
        logits = D(image, sent)
    assert image.shape == (2, 3, size, size)
    assert image.abs().max() <= 1
    assert [tuple(m.shape) for m in masks] == [(2, 1, 4 * 2**k, 4 * 2**k) for k in range(blocks)]
    assert all(((m > 0) & (m < 1)).all() for m in masks)
    assert features.shape == (2, 16 * ngf, 4, 4)
    assert logits.shape == (2,)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_dfgan_shapes(size):
    torch.manual_seed(0)
    ngf = 4
    G = DFGANGenerator(DFGANGeneratorConfig(ngf=ngf, image_size=size)).eval()
    D = DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=ngf, image_size=size)).eval()
    plan = dfgan_generator_channels(ngf, size)
    assert len(G.GBlocks) == len(D.D.DBlocks) == int(math.log2(size)) - 2 == len(plan)
    assert plan[-1][1] == ngf and plan[0][0] == 8 * ngf
    noise, sent = _inputs(2)
    with torch.no_grad():
        image = G(noise, sent)
        features = D(image)
        logits = D(image, sent)
    assert image.shape == (2, 3, size, size)
    assert image.abs().max() <= 1
    assert features.shape == (2, 8 * ngf, 4, 4)
    assert logits.shape == (2,)


@pytest.mark.parametrize("config_class", [SSAGANGeneratorConfig, SSAGANDiscriminatorConfig,
                                          DFGANGeneratorConfig, DFGANDiscriminatorConfig])
def test_invalid_image_size_is_rejected(config_class):
    with pytest.raises(ValueError, match="image_size must be one of 64, 128, 256"):
        config_class(image_size=96)
    with pytest.raises(ConfigError, match="image_size"):
        config_class.from_dict({"image_size": 512})


def test_invalid_formulation_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="formulation"):
        SSAGANGeneratorConfig(formulation="other")  # type: ignore[arg-type]
    G = SSAGANGenerator(SSAGANGeneratorConfig(ngf=2, image_size=64))
    with pytest.raises(ValueError, match="noise must be"):
        G(torch.zeros(2, 99), torch.zeros(2, 256))
    D = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=2, image_size=64))
    with pytest.raises(ValueError, match="image must be"):
        D(torch.zeros(2, 3, 128, 128))
    with pytest.raises(ValueError, match="exactly one"):
        D(torch.zeros(2, 3, 64, 64), torch.zeros(2, 256), features=torch.zeros(2, 32, 4, 4))


# ------------------------------------------------------------------------------------------------ save / load


def _small_models() -> list[nn.Module]:
    return [
        SSAGANGenerator(SSAGANGeneratorConfig(ngf=4, image_size=64, formulation="paper", mask_hidden=7)),
        SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=4, image_size=64, cond_dim=32)),
        DFGANGenerator(DFGANGeneratorConfig(ngf=4, image_size=64, nz=16)),
        DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=4, image_size=64)),
    ]


def _run(model: nn.Module, noise: torch.Tensor, sent: torch.Tensor, image: torch.Tensor) -> list[torch.Tensor]:
    c = model.config
    noise = noise[:, : getattr(c, "nz", noise.shape[1])]
    sent = sent[:, : c.cond_dim]
    if isinstance(model, SSAGANGenerator):
        img, masks = model(noise, sent)
        return [img, *masks]
    if isinstance(model, DFGANGenerator):
        return [model(noise, sent)]
    return [model(image), model(image, sent)]


@pytest.mark.parametrize("index", range(4))
def test_save_pretrained_round_trip_is_bit_exact(tmp_path, index):
    model = randomize_module(_small_models()[index], seed=index, residual_gamma=0.7).eval()
    noise, sent = _inputs(2)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before = _run(model, noise, sent, image)
    model.save_pretrained(tmp_path / "m")
    loaded = type(model).from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        after = _run(loaded, noise, sent, image)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


# ------------------------------------------------------------------------------------------------ batch independence


@pytest.mark.parametrize("index", range(4))
def test_eval_outputs_do_not_depend_on_the_batch(index):
    model = randomize_module(_small_models()[index], seed=10 + index, residual_gamma=0.7).eval()
    noise, sent = _inputs(3)
    image = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        together = _run(model, noise, sent, image)
        single = [_run(model, noise[i:i + 1], sent[i:i + 1], image[i:i + 1]) for i in range(3)]
    for j, out in enumerate(together):
        assert max_abs_err(out, torch.cat([s[j] for s in single])) < 1e-5


# ------------------------------------------------------------------------------------------------ SSACN formulations


def _hand_affine(affine: SSACNAffine, x: torch.Tensor, s: torch.Tensor, m: torch.Tensor, form: str) -> torch.Tensor:
    bn = affine.batch_norm2d
    h = (x - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)

    def mlp(seq: AffineMLP) -> torch.Tensor:
        hidden = torch.clamp(s @ seq.linear1.weight.T + seq.linear1.bias, min=0)
        return (hidden @ seq.linear2.weight.T + seq.linear2.bias)[:, :, None, None]

    gamma, beta = mlp(affine.fc_gamma), mlp(affine.fc_beta)
    if form == "official":
        return (gamma * m + 1) * h + beta * m
    return m * (gamma * h + beta)


def test_paper_and_official_formulations_match_their_formulas_and_differ():
    torch.manual_seed(3)
    blocks = {form: SSACNBlock(6, 4, 16, predict_mask=True, mask_hidden=5, formulation=form)
              for form in ("official", "paper")}
    randomize_module(blocks["official"], seed=3, residual_gamma=0.7)
    blocks["paper"].load_state_dict(blocks["official"].state_dict())
    x, s = torch.randn(2, 6, 8, 8), torch.randn(2, 16)
    m = torch.rand(2, 1, 8, 8)
    outs = {}
    for form, block in blocks.items():
        block.eval()
        with torch.no_grad():
            out, next_logits = block(x, s, m)
            h = F.relu(_hand_affine(block.affine0, x, s, m, form))
            h = F.relu(_hand_affine(block.affine2, F.conv2d(h, block.c1.weight, block.c1.bias, padding=1), s, m, form))
            h = F.conv2d(h, block.c2.weight, block.c2.bias, padding=1)
            expected = F.conv2d(x, block.c_sc.weight, block.c_sc.bias) + block.gamma * h
        assert max_abs_err(out, expected) < 1e-5
        assert next_logits is not None and next_logits.shape == (2, 1, 8, 8)
        outs[form] = out
    assert max_abs_err(outs["official"], outs["paper"]) > 1e-2

    # whole generators on the same weights differ too
    gens = {form: SSAGANGenerator(SSAGANGeneratorConfig(ngf=2, image_size=64, formulation=form)).eval()
            for form in ("official", "paper")}
    randomize_module(gens["official"], seed=4, residual_gamma=0.7)
    gens["paper"].load_state_dict(gens["official"].state_dict())
    noise, sent = _inputs(2)
    with torch.no_grad():
        assert max_abs_err(gens["official"](noise, sent)[0], gens["paper"](noise, sent)[0]) > 1e-3


def test_initialisation_follows_the_official_code():
    ssa = SSAGANGenerator(SSAGANGeneratorConfig(ngf=2, image_size=64))
    for affine in (ssa.block0.affine0, ssa.block0.affine2):
        for mlp in (affine.fc_gamma, affine.fc_beta):
            assert not mlp.linear2.weight.any() and not mlp.linear2.bias.any()
    assert ssa.block0.gamma.item() == 0
    paper = SSAGANGenerator(SSAGANGeneratorConfig(ngf=2, image_size=64, formulation="paper"))
    assert torch.equal(paper.block0.affine0.fc_gamma.linear2.bias, torch.ones(16))
    # official form at init = plain BN
    x, s, m = torch.randn(2, 16, 4, 4), torch.randn(2, 256), torch.rand(2, 1, 4, 4)
    affine = ssa.block0.affine0.eval()
    assert torch.allclose(affine(x, s, m), affine.batch_norm2d(x))

    df = DFGANGenerator(DFGANGeneratorConfig(ngf=2, image_size=64))
    aff = df.GBlocks[0].fuse1.affine0
    assert not aff.fc_gamma.linear2.weight.any() and torch.equal(aff.fc_gamma.linear2.bias, torch.ones(16))
    assert not aff.fc_beta.linear2.weight.any() and not aff.fc_beta.linear2.bias.any()
    D = DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=2, image_size=64))
    assert all(b.gamma.item() == 0 for b in D.D.DBlocks)


# ------------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_hinge_losses_reach_every_parameter(family):
    if family == "ssagan":
        G = SSAGANGenerator(SSAGANGeneratorConfig(ngf=2, image_size=64))
        D = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=2, image_size=64))
    else:
        G = DFGANGenerator(DFGANGeneratorConfig(ngf=2, image_size=64))
        D = DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=2, image_size=64))
    randomize_module(G, seed=5, residual_gamma=0.7)
    randomize_module(D, seed=6, residual_gamma=0.7)
    noise, sent = _inputs(4)
    real = torch.rand(4, 3, 64, 64) * 2 - 1

    fake = G(noise, sent)
    fake = fake[0] if isinstance(fake, tuple) else fake
    real_features = D(real)
    d_loss = (F.relu(1 - D(features=real_features, sent_emb=sent)).mean()
              + 0.5 * F.relu(1 + D(fake.detach(), sent)).mean()
              + 0.5 * F.relu(1 + D(features=real_features, sent_emb=sent.roll(1, 0))).mean())
    d_loss.backward()
    for name, p in D.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"D.{name} gets no gradient"
    assert all(p.grad is None for p in G.parameters())

    D.zero_grad(set_to_none=True)
    g_loss = -D(fake, sent).mean()
    g_loss.backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"G.{name} gets no gradient"
