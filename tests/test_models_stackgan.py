"""StackGAN networks: the official fixture (StackGAN-Pytorch), released key layouts, shapes, CA sampling and
its draw order, save/load, batch independence, gradient flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import (
    assert_released_shapes,
    load_official_fixture,
    max_abs_err,
    randomize_module,
)
from t2igan.config import ConfigError
from t2igan.models.base import load_state_strict
from t2igan.models.stackgan import (
    StackGANCANet,
    StackGANDiscriminatorConfig,
    StackGANStage1Config,
    StackGANStage1Discriminator,
    StackGANStage1Generator,
    StackGANStage2Config,
    StackGANStage2Discriminator,
    StackGANStage2Generator,
    draw_eps,
)

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_thread")

# a tiny configuration shared by the shape, save/load and batch tests
TINY = dict(nz=16, text_dim=24, cond_dim=8)






def _inputs(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """noise, text embedding, eps1, eps2 for the tiny configuration."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, TINY["nz"], generator=g), torch.randn(batch, TINY["text_dim"], generator=g),
            torch.randn(batch, TINY["cond_dim"], generator=g), torch.randn(batch, TINY["cond_dim"], generator=g))


@pytest.fixture(scope="module")
def stackgan_fixture() -> dict:
    return load_official_fixture("stackgan_ngf8.pt")


def _official_models(fx: dict) -> dict[str, nn.Module]:
    cfg = fx["config"]
    common = dict(ngf=cfg["ngf"], nz=cfg["nz"], text_dim=cfg["text_dim"], cond_dim=cfg["cond_dim"])
    d_cfg = StackGANDiscriminatorConfig(ndf=cfg["ndf"], cond_dim=cfg["cond_dim"])
    models = {
        "netG1": StackGANStage1Generator(StackGANStage1Config(**common)),
        "netG2": StackGANStage2Generator(StackGANStage2Config(**common, r_num=cfg["r_num"])),
        "netD1": StackGANStage1Discriminator(d_cfg),
        "netD2": StackGANStage2Discriminator(d_cfg),
    }
    for name, model in models.items():
        assert list(model.state_dict()) == list(fx[name])  # same keys, same order
        load_state_strict(model, fx[name], source=name)  # every key used, every tensor filled
        model.eval()
    return models


# ------------------------------------------------------------------------------------------------ official fixture


def test_stage1_reproduces_official_outputs(stackgan_fixture):
    fx = stackgan_fixture
    m = _official_models(fx)
    with torch.no_grad():
        image1, mu1, logvar1 = m["netG1"](fx["noise"], fx["text_embedding"], eps=fx["eps1"])
        c_code1, _, _ = m["netG1"].ca_net(fx["text_embedding"], eps=fx["eps1"])
        features = m["netD1"](fx["image1"])
        cond, uncond = m["netD1"](fx["image1"], fx["mu1"])
        cond_from_features, _ = m["netD1"](features=fx["d1_features"], mu=fx["mu1"])
    assert max_abs_err(image1, fx["image1"]) < TOL
    assert max_abs_err(mu1, fx["mu1"]) < TOL
    assert max_abs_err(logvar1, fx["logvar1"]) < TOL
    assert max_abs_err(c_code1, fx["c_code1"]) < TOL
    assert max_abs_err(features, fx["d1_features"]) < TOL
    assert max_abs_err(cond, fx["d1_cond_logits"]) < TOL
    assert max_abs_err(cond_from_features, fx["d1_cond_logits"]) < TOL
    assert uncond is None and m["netD1"].get_uncond_logits is None  # as official STAGE1_D


def test_stage2_reproduces_official_outputs(stackgan_fixture):
    fx = stackgan_fixture
    m = _official_models(fx)
    with torch.no_grad():
        image2_lr, image2, mu2, logvar2 = m["netG2"](fx["noise"], fx["text_embedding"], fx["eps1"], fx["eps2"])
        c_code2, _, _ = m["netG2"].ca_net(fx["text_embedding"], eps=fx["eps2"])
        features = m["netD2"](fx["image2"])
        cond, uncond = m["netD2"](fx["image2"], fx["mu2"])
    assert max_abs_err(image2_lr, fx["image2_lr"]) < TOL
    assert max_abs_err(image2_lr, fx["image1"]) < TOL
    assert max_abs_err(image2, fx["image2"]) < TOL
    assert max_abs_err(mu2, fx["mu2"]) < TOL
    assert max_abs_err(logvar2, fx["logvar2"]) < TOL
    assert max_abs_err(c_code2, fx["c_code2"]) < TOL
    assert max_abs_err(features, fx["d2_features"]) < TOL
    assert max_abs_err(cond, fx["d2_cond_logits"]) < TOL
    assert uncond is not None and max_abs_err(uncond, fx["d2_uncond_logits"]) < TOL


def test_ca_draws_like_the_official_code(stackgan_fixture):
    """Seeded like the fixture's driver: Stage-I draws eps1; Stage-II draws eps1 (Stage-I) first, then eps2."""
    fx = stackgan_fixture
    m = _official_models(fx)
    cfg = fx["config"]
    with torch.no_grad():
        torch.manual_seed(cfg["eps_seed"])
        image1, _, _ = m["netG1"](fx["noise"], fx["text_embedding"])
        torch.manual_seed(cfg["eps_seed"])
        image2_lr, image2, _, _ = m["netG2"](fx["noise"], fx["text_embedding"])
        g = torch.Generator().manual_seed(cfg["eps_seed"])
        _, image2_g, _, _ = m["netG2"](fx["noise"], fx["text_embedding"], generator=g)
    assert max_abs_err(image1, fx["image1"]) < TOL
    assert max_abs_err(image2_lr, fx["image1"]) < TOL
    assert max_abs_err(image2, fx["image2"]) < TOL
    assert max_abs_err(image2_g, fx["image2"]) < TOL
    torch.manual_seed(cfg["eps_seed"])
    assert torch.equal(torch.randn(3, cfg["cond_dim"]), fx["eps1"])
    assert torch.equal(torch.randn(3, cfg["cond_dim"]), fx["eps2"])
    # the official CA: fc -> ReLU -> split, so mu and logvar are non-negative
    assert (fx["mu1"] >= 0).all() and (fx["logvar1"] >= 0).all()
    assert max_abs_err(fx["c_code1"], fx["eps1"] * torch.exp(0.5 * fx["logvar1"]) + fx["mu1"]) < 1e-6


# ------------------------------------------------------------------------------------------------ released key layouts


RELEASED = {
    "stackgan_stage1_netG_ngf192_coco": lambda: StackGANStage1Generator(StackGANStage1Config(ngf=192)),
    "stackgan_stage1_netD_ndf96_coco": lambda: StackGANStage1Discriminator(StackGANDiscriminatorConfig(ndf=96)),
    "stackgan_stage2_netG_ngf192_coco": lambda: StackGANStage2Generator(StackGANStage2Config(ngf=192, r_num=2)),
    "stackgan_stage2_netD_ndf96_coco": lambda: StackGANStage2Discriminator(StackGANDiscriminatorConfig(ndf=96)),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_keys_and_shapes_equal_released_checkpoints(name):
    assert_released_shapes(name, RELEASED[name])


def test_defaults_are_the_released_coco_sizes():
    assert StackGANStage1Config() == StackGANStage1Config(ngf=192, nz=100, text_dim=1024, cond_dim=128)
    assert StackGANStage2Config().r_num == 2 and StackGANDiscriminatorConfig().ndf == 96


# ------------------------------------------------------------------------------------------------ shapes and configs


def _tiny_models() -> list[nn.Module]:
    return [
        StackGANStage1Generator(StackGANStage1Config(ngf=4, **TINY)),
        StackGANStage2Generator(StackGANStage2Config(ngf=4, r_num=1, stage1_ngf=2, **TINY)),
        StackGANStage1Discriminator(StackGANDiscriminatorConfig(ndf=2, cond_dim=TINY["cond_dim"])),
        StackGANStage2Discriminator(StackGANDiscriminatorConfig(ndf=2, cond_dim=TINY["cond_dim"])),
    ]


def test_tiny_shapes():
    torch.manual_seed(0)
    G1, G2, D1, D2 = (randomize_module(m, seed=i).eval() for i, m in enumerate(_tiny_models()))
    noise, text, eps1, eps2 = _inputs(2)
    with torch.no_grad():
        image1, mu1, logvar1 = G1(noise, text, eps1)
        lr, image2, mu2, logvar2 = G2(noise, text, eps1, eps2)
        f1, f2 = D1(image1), D2(image2)
        c1, u1 = D1(image1, mu1)
        c2, u2 = D2(image2, mu2)
    assert image1.shape == lr.shape == (2, 3, 64, 64) and image2.shape == (2, 3, 256, 256)
    assert image1.abs().max() <= 1 and image2.abs().max() <= 1
    for t in (mu1, logvar1, mu2, logvar2):
        assert t.shape == (2, TINY["cond_dim"]) and (t >= 0).all()
    assert G1.upsample4[1].out_channels == 2 and G2.STAGE1_G.upsample4[1].out_channels == 1
    assert G2.encoder[-3].out_channels == 16 and G2.img[0].in_channels == 1 and len(G2.residual) == 1
    assert f1.shape == (2, 16, 4, 4) and f2.shape == (2, 16, 4, 4)
    assert u1 is None and u2 is not None
    for p in (c1, c2, u2):
        assert p.shape == (2,) and ((p > 0) & (p < 1)).all()  # sigmoid outputs


def test_invalid_configs_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="ngf must be at least 2"):
        StackGANStage1Config(ngf=1)
    with pytest.raises(ValueError, match="ngf must be at least 4"):
        StackGANStage2Config(ngf=2)
    with pytest.raises(ValueError, match="r_num"):
        StackGANStage2Config(r_num=-1)
    with pytest.raises(ConfigError, match="unknown key 'gf_dim'"):
        StackGANStage1Config.from_dict({"gf_dim": 8})
    with pytest.raises(ConfigError, match="cond_dim"):
        StackGANDiscriminatorConfig.from_dict({"cond_dim": 0})
    G1, G2, D1, _ = _tiny_models()
    noise, text, eps1, eps2 = _inputs(2)
    with pytest.raises(ValueError, match="noise must be"):
        G1(noise[:, :-1], text)
    with pytest.raises(ValueError, match="text_embedding must be"):
        G1(noise, text[:1])
    with pytest.raises(ValueError, match="eps must be"):
        G2(noise, text, eps1, eps2[:, :-1])
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        draw_eps(3, 4, torch.zeros(1), [torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError, match="image must be"):
        D1(torch.zeros(2, 3, 256, 256))
    with pytest.raises(ValueError, match="exactly one"):
        D1(torch.zeros(2, 3, 64, 64), eps1, features=torch.zeros(2, 16, 4, 4))
    with pytest.raises(ValueError, match="without mu"):
        D1(features=torch.zeros(2, 16, 4, 4))
    with pytest.raises(ValueError, match="mu must be"):
        D1(torch.zeros(2, 3, 64, 64), eps1[:, :-1])


# ------------------------------------------------------------------------------------------------ save / load


def _run(model: nn.Module, noise, text, eps1, eps2, image64, image256) -> list[torch.Tensor]:
    if isinstance(model, StackGANStage1Generator):
        return list(model(noise, text, eps1))
    if isinstance(model, StackGANStage2Generator):
        return list(model(noise, text, eps1, eps2))
    image = image64 if isinstance(model, StackGANStage1Discriminator) else image256
    cond, uncond = model(image, eps1.abs())
    return [model(image), cond] + ([] if uncond is None else [uncond])


def _images(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.rand(batch, 3, 64, 64, generator=g) * 2 - 1, torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1


@pytest.mark.parametrize("index", range(4))
def test_save_pretrained_round_trip_is_bit_exact(tmp_path, index):
    model = randomize_module(_tiny_models()[index], seed=index).eval()
    inputs = (*_inputs(2), *_images(2))
    with torch.no_grad():
        before = _run(model, *inputs)
    model.save_pretrained(tmp_path / "m")
    loaded = type(model).from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        after = _run(loaded, *inputs)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))


# ------------------------------------------------------------------------------------------------ batch independence


@pytest.mark.parametrize("index", range(4))
def test_eval_outputs_do_not_depend_on_the_batch(index):
    model = randomize_module(_tiny_models()[index], seed=10 + index).eval()
    inputs = (*_inputs(3), *_images(3))
    with torch.no_grad():
        together = _run(model, *inputs)
        single = [_run(model, *(t[i:i + 1] for t in inputs)) for i in range(3)]
    for j, out in enumerate(together):
        assert max_abs_err(out, torch.cat([s[j] for s in single])) < 1e-5


def test_per_sample_generators_make_samples_batch_independent():
    G2 = randomize_module(_tiny_models()[1], seed=3).eval()
    noise, text, _, _ = _inputs(3)

    def gens(indices):
        return [torch.Generator().manual_seed(100 + i) for i in indices]

    with torch.no_grad():
        _, together, _, _ = G2(noise, text, generator=gens(range(3)))
        _, alone, _, _ = G2(noise[1:2], text[1:2], generator=gens([1]))
        # per sample, eps1 then eps2 come from that sample's generator
        g = gens([1])[0]
        eps1, eps2 = torch.randn(1, TINY["cond_dim"], generator=g), torch.randn(1, TINY["cond_dim"], generator=g)
        _, explicit, _, _ = G2(noise[1:2], text[1:2], eps1, eps2)
    assert max_abs_err(together[1:2], alone) < 1e-5
    assert torch.equal(alone, explicit)


# ------------------------------------------------------------------------------------------------ CA, init, gradients


def test_ca_formula_and_sampling_in_eval_mode():
    ca = randomize_module(StackGANCANet(12, 5), seed=2).eval()
    text = torch.randn(4, 12)
    eps = torch.randn(4, 5)
    c_code, mu, logvar = ca(text, eps)
    x = torch.relu(text @ ca.fc.weight.T + ca.fc.bias)
    assert torch.allclose(mu, x[:, :5]) and torch.allclose(logvar, x[:, 5:])
    assert torch.allclose(c_code, eps * torch.exp(0.5 * logvar) + mu)
    a, _, _ = ca(text)
    b, _, _ = ca(text)
    assert not torch.equal(a, b)  # CA samples in eval mode too, as the official code


def test_initialisation_follows_the_official_code():
    torch.manual_seed(0)
    for model in _tiny_models():
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                assert not module.bias.any()
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                assert not module.bias.any() and (module.weight - 1).abs().max() < 0.15
            if isinstance(module, nn.Conv2d | nn.Linear) and module.weight.numel() > 100:
                assert 0.01 < module.weight.std().item() < 0.03


def test_stage2_gradients_skip_stage1_and_reach_everything_else():
    _, G2, _, D2 = (randomize_module(m, seed=20 + i) for i, m in enumerate(_tiny_models()))
    noise, text, _, _ = _inputs(4)
    _, fake, mu, logvar = G2(noise, text)
    cond, uncond = D2(fake, mu)
    assert uncond is not None
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()
    (nn.functional.binary_cross_entropy(cond, torch.ones_like(cond))
     + nn.functional.binary_cross_entropy(uncond, torch.ones_like(uncond)) + 2.0 * kl).backward()
    for name, p in G2.named_parameters():
        if name.startswith("STAGE1_G."):
            assert p.grad is None, f"{name} got a gradient through the detached Stage-I image"
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"G.{name} gets no gradient"
    for name, p in D2.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"D.{name} gets no gradient"
