"""The target-aware objectives of SSA-GAN and DF-GAN (``t2igan.objectives``): registry, phases and optimizers with
the official values, and every phase's loss against an independent computation on tiny networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from t2igan.config import ConfigError, from_dict
from t2igan.losses import damsm_loss
from t2igan.models.damsm import ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig
from t2igan.models.dfgan import (
    DFGANDiscriminator,
    DFGANDiscriminatorConfig,
    DFGANGenerator,
    DFGANGeneratorConfig,
)
from t2igan.models.layers import ConditionalHead
from t2igan.models.ssagan import (
    SSAGANDiscriminator,
    SSAGANDiscriminatorConfig,
    SSAGANGenerator,
    SSAGANGeneratorConfig,
)
from t2igan.objectives import (
    OBJECTIVES,
    DFGANObjective,
    DFGANObjectiveConfig,
    Networks,
    OptimizerSpec,
    Phase,
    SSAGANObjective,
    SSAGANObjectiveConfig,
    StepContext,
    TargetAwareConfig,
)
from t2igan.objectives.target_aware import _encoder_params

pytestmark = pytest.mark.usefixtures("one_thread")

B, NZ, COND, VOCAB, T = 4, 8, 16, 20, 6
LENGTHS = [6, 4, 5, 3]
CLASS_IDS = [1, 1, 2, 3]  # items 0 and 1 share a class: not negatives of each other in the DAMSM loss


# -- tiny networks and a step -------------------------------------------------------------------------------------
def _wake(module: torch.nn.Module, feature_gain: float) -> None:
    """Open the residual branches (their gamma starts at 0) and strengthen the discriminator head, so that its
    logits depend on both the image and the sentence and some of them lie beyond the hinge margins."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.split(".")[-1] == "gamma":
                p.fill_(0.7)
        for m in module.modules():
            if isinstance(m, ConditionalHead):
                m.joint_conv[0].weight[:, : m.in_channels].mul_(feature_gain)
                m.joint_conv[2].weight.mul_(8.0)


def tiny_nets(family: str, *, seed: int = 0, dropout: float = 0.0, image_encoder: bool = True) -> Networks:
    torch.manual_seed(seed)
    if family == "ssagan":
        g = SSAGANGenerator(SSAGANGeneratorConfig(ngf=4, nz=NZ, cond_dim=COND, image_size=64, mask_hidden=8))
        d = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=4, cond_dim=COND, image_size=64))
    else:
        g = DFGANGenerator(DFGANGeneratorConfig(ngf=4, nz=NZ, cond_dim=COND, image_size=64))
        d = DFGANDiscriminator(DFGANDiscriminatorConfig(ndf=4, cond_dim=COND, image_size=64))
    _wake(g, 1.0)
    _wake(d, {"ssagan": 16.0, "dfgan": 2.0}[family])
    te = TextEncoder(TextEncoderConfig(vocab_size=VOCAB, word_dim=8, hidden=COND, dropout=dropout))
    with torch.no_grad():  # at its initialisation the tiny encoder gives nearly the same sentence for every caption
        te.encoder.weight.normal_(0.0, 2.0)
        for p in te.rnn.parameters():
            p.uniform_(-1.0, 1.0)
    ie = ImageEncoder(ImageEncoderConfig.light(input_size=64, width=8, embed_dim=COND)) if image_encoder else None
    return Networks(generator=g, discriminator=d, text_encoder=te, image_encoder=ie)


def make_batch(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    captions = torch.randint(1, VOCAB, (B, T), generator=gen)
    lengths = torch.tensor(LENGTHS)
    captions[torch.arange(T)[None, :] >= lengths[:, None]] = 0  # <end> padding
    images = torch.rand(B, 3, 64, 64, generator=gen) * 2 - 1
    return {"images": images, "captions": captions, "lengths": lengths, "class_ids": torch.tensor(CLASS_IDS)}


def autograd_grad(out: torch.Tensor, ins) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, list(ins), create_graph=True)


def make_ctx(batch: dict, seed: int = 0) -> StepContext:
    noise = torch.randn(B, NZ, generator=torch.Generator().manual_seed(seed + 100))
    return StepContext(batch=batch, noise=noise, grad=autograd_grad)


def encode(nets: Networks, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The sentence/word embeddings of the batch, from the text encoder in eval mode (no dropout)."""
    te = nets.text_encoder
    was = te.training
    te.eval()
    with torch.no_grad():
        words, sent = te(batch["captions"], batch["lengths"])
    te.train(was)
    return words, sent


def begun(objective, family: str, **kwargs) -> tuple[Networks, StepContext]:
    nets = tiny_nets(family, **kwargs)
    ctx = make_ctx(make_batch())
    objective.begin(nets, ctx)
    return nets, ctx


def ref_hinge(D, images, sent, fake, shift: int = 1) -> tuple[torch.Tensor, ...]:
    real = F.relu(1 - D(images, sent)).mean()
    fk = F.relu(1 + D(fake.detach(), sent)).mean()
    mis = F.relu(1 + D(images, torch.roll(sent, -shift, 0))).mean()
    return real + (fk + mis) / 2, real, fk, mis


def ref_ma_gp(D, images, sent) -> tuple[torch.Tensor, torch.Tensor]:
    """DF-GAN ``MA_GP``: 2 * mean(||[d D(x, s)/dx, d D(x, s)/ds]||_2^6) on real images and their own sentences."""
    x = images.detach().clone().requires_grad_(True)
    s = sent.detach().clone().requires_grad_(True)
    out = D(x, s)
    gx, gs = torch.autograd.grad(out, (x, s), torch.ones_like(out), create_graph=True)
    norm = torch.cat([gx.reshape(B, -1), gs.reshape(B, -1)], 1).pow(2).sum(1).sqrt()
    return 2.0 * norm.pow(6).mean(), norm.detach().mean()


def grads_of(params) -> list[torch.Tensor | None]:
    return [p.grad for p in params]


def has_grad(p: torch.nn.Parameter) -> bool:
    return p.grad is not None and bool(p.grad.abs().sum() > 0)


# -- registry, defaults, phases, optimizers -------------------------------------------------------------------------
def test_registry():
    assert "ssagan" in OBJECTIVES and "dfgan" in OBJECTIVES
    assert OBJECTIVES.get("ssagan") is SSAGANObjective
    assert OBJECTIVES.get("dfgan") is DFGANObjective
    assert isinstance(SSAGANObjective().config, SSAGANObjectiveConfig)
    assert isinstance(DFGANObjective().config, DFGANObjectiveConfig)


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_default_constants_are_official(family):
    c = OBJECTIVES.get(family)().config
    assert (c.gp_weight, c.gp_power) == (2.0, 6.0)
    assert (c.damsm_gamma1, c.damsm_gamma2, c.damsm_gamma3) == (5.0, 5.0, 10.0)
    assert c.mismatch_shift == 1
    assert c.finetune_text_encoder is False
    assert (c.gp_schedule, c.damsm_weight) == {"ssagan": ("separate", 0.05), "dfgan": ("combined", 0.0)}[family]


def _names(objective) -> list[tuple[str, str]]:
    return [(p.name, p.optimizer) for p in objective.phases()]


def test_phases():
    # penalties run in fp32 under mixed precision: the separate Dreg, or DF-GAN's Dmain that contains the penalty
    assert SSAGANObjective().phases() == [Phase("Dmain", "D"), Phase("Dreg", "D", autocast=False), Phase("Gmain", "G")]
    assert DFGANObjective().phases() == [Phase("Dmain", "D", autocast=False), Phase("Gmain", "G")]
    assert DFGANObjective(DFGANObjectiveConfig(gp_weight=0.0)).phases()[0].autocast
    assert all(p.interval == 1 for p in SSAGANObjective().phases())
    # the schedule switch
    assert _names(SSAGANObjective(SSAGANObjectiveConfig(gp_schedule="combined"))) == [("Dmain", "D"), ("Gmain", "G")]
    assert _names(DFGANObjective(DFGANObjectiveConfig(gp_schedule="separate"))) == [
        ("Dmain", "D"), ("Dreg", "D"), ("Gmain", "G")]
    # no penalty, no Dreg
    assert _names(SSAGANObjective(SSAGANObjectiveConfig(gp_weight=0.0))) == [("Dmain", "D"), ("Gmain", "G")]
    # fine-tuning adds the encoders' phase, last
    assert _names(SSAGANObjective(SSAGANObjectiveConfig(finetune_text_encoder=True))) == [
        ("Dmain", "D"), ("Dreg", "D"), ("Gmain", "G"), ("Emain", "E")]
    assert _names(DFGANObjective(DFGANObjectiveConfig(finetune_text_encoder=True))) == [
        ("Dmain", "D"), ("Gmain", "G"), ("Emain", "E")]


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_optimizers_official(family):
    cls = OBJECTIVES.get(family)
    specs = cls().optimizers()
    assert set(specs) == {"G", "D"}
    assert specs["G"] == OptimizerSpec(("generator",), 1e-4, (0.0, 0.9))
    assert specs["D"] == OptimizerSpec(("discriminator",), 4e-4, (0.0, 0.9))
    assert specs["G"].params is None and specs["D"].params is None  # all of the network's parameters
    specs = cls(cls.config_class(finetune_text_encoder=True)).optimizers()
    assert set(specs) == {"G", "D", "E"}
    e = specs["E"]
    assert e.networks == ("text_encoder", "image_encoder")
    assert e.lr == 4e-5 and e.betas == (0.0, 0.9)
    assert e.params is _encoder_params
    # every phase's optimizer exists
    obj = cls(cls.config_class(finetune_text_encoder=True))
    assert {p.optimizer for p in obj.phases()} <= set(obj.optimizers())


def test_needs_image_encoder():
    assert SSAGANObjective().needs_image_encoder()
    assert not DFGANObjective().needs_image_encoder()
    assert DFGANObjective(DFGANObjectiveConfig(finetune_text_encoder=True)).needs_image_encoder()


def test_unknown_phase():
    obj = DFGANObjective()
    nets, ctx = begun(obj, "dfgan", image_encoder=False)
    with pytest.raises(KeyError, match="Ereg"):
        obj.loss("Ereg", nets, ctx)


# -- begin ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_begin_values(family):
    obj = OBJECTIVES.get(family)()
    nets, ctx = begun(obj, family)
    words, sent = encode(nets, ctx.batch)
    torch.testing.assert_close(ctx.values["sent"], sent, rtol=0, atol=0)
    torch.testing.assert_close(ctx.values["words"], words, rtol=0, atol=0)
    assert not ctx.values["sent"].requires_grad and not ctx.values["words"].requires_grad
    assert ctx.values["fake"].shape == (B, 3, 64, 64)
    assert ctx.values["fake"].requires_grad  # kept for the generator phase
    if family == "ssagan":
        assert [m.shape[-1] for m in ctx.values["masks"]] == [4, 8, 16, 32, 64]
    else:
        assert ctx.values["masks"] is None


@pytest.mark.parametrize("training", [True, False])
def test_begin_encodes_without_dropout_and_restores_mode(training):
    nets = tiny_nets("ssagan", dropout=0.5, image_encoder=False)
    te = nets.text_encoder
    te.train(training)
    batch = make_batch()
    if training:  # the dropout is real: two train-mode forwards differ
        torch.manual_seed(5)
        a = te(batch["captions"], batch["lengths"])[1]
        b = te(batch["captions"], batch["lengths"])[1]
        assert not torch.allclose(a, b)
    obj = SSAGANObjective()
    sents = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        ctx = make_ctx(batch)
        obj.begin(nets, ctx)
        assert te.training is training
        sents.append(ctx.values["sent"])
    torch.testing.assert_close(sents[0], sents[1], rtol=0, atol=0)
    torch.testing.assert_close(sents[0], encode(nets, batch)[1], rtol=0, atol=0)


# -- Dmain ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [1, 2])
def test_dmain_separate_equals_hinge(shift):
    obj = SSAGANObjective(SSAGANObjectiveConfig(mismatch_shift=shift))
    nets, ctx = begun(obj, "ssagan")
    loss, stats = obj.loss("Dmain", nets, ctx)
    sent = encode(nets, ctx.batch)[1]
    total, real, fake, mis = ref_hinge(nets.discriminator, ctx.batch["images"], sent, ctx.values["fake"], shift)
    torch.testing.assert_close(loss, total, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats["d/loss"], total.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats["d/real"], real.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats["d/fake"], fake.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats["d/mismatch"], mis.detach(), rtol=1e-6, atol=1e-6)
    assert "d/gp" not in stats  # the penalty is its own phase
    assert all(not v.requires_grad for v in stats.values())
    # the mismatched term really pairs item i with sentence i + shift: another pairing gives another loss
    other = F.relu(1 + nets.discriminator(ctx.batch["images"], torch.roll(sent, shift - 3, 0))).mean()
    assert abs(other.item() - mis.item()) > 1e-4


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_tiny_networks_are_not_degenerate(family):
    """Some logits of the tiny networks lie beyond the hinge margins (the relus matter), the sentence and the
    image both move them, and the gradient norms of the penalty are near 1 (so norm^6 neither vanishes nor
    swamps the hinge terms)."""
    nets, ctx = begun(OBJECTIVES.get(family)(), family)
    sent = encode(nets, ctx.batch)[1]
    assert sent.std(0).mean() > 0.1  # captions give different sentences
    D, images, fake = nets.discriminator, ctx.batch["images"], ctx.values["fake"]
    with torch.no_grad():
        real, fk, mis = D(images, sent), D(fake, sent), D(images, torch.roll(sent, -1, 0))
    margins = [1 - real, 1 + fk, 1 + mis]  # the relu arguments of the three hinge terms
    assert all((m > 0.1).any() for m in margins)  # no term is zero
    assert (torch.cat(margins) < -0.1).any()  # and the relu cuts something off
    assert (real - fk).abs().max() > 0.02 and (real - mis).abs().max() > 0.1
    gp, norm = ref_ma_gp(D, images, sent)
    assert 0.3 < norm.item() < 3 and 0.05 < gp.item() < 20


@pytest.mark.parametrize("family", ["dfgan", "ssagan"])
def test_dmain_combined_equals_hinge_plus_ma_gp(family):
    cls = OBJECTIVES.get(family)
    obj = cls(cls.config_class(gp_schedule="combined"))
    nets, ctx = begun(obj, family)
    loss, stats = obj.loss("Dmain", nets, ctx)
    D = nets.discriminator
    sent = encode(nets, ctx.batch)[1]
    hinge = ref_hinge(D, ctx.batch["images"], sent, ctx.values["fake"])[0]
    gp, norm = ref_ma_gp(D, ctx.batch["images"], sent)
    torch.testing.assert_close(loss, hinge + gp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["d/gp"], gp.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats["d/gp_grad_norm"], norm, rtol=1e-5, atol=1e-7)
    # d/loss logs the hinge part alone, as under the separate schedule
    torch.testing.assert_close(stats["d/loss"], hinge.detach(), rtol=1e-6, atol=1e-6)
    # same gradient for D's weights (the penalty is differentiated twice)
    params = list(D.parameters())
    mine = torch.autograd.grad(loss, params, allow_unused=True)
    theirs = torch.autograd.grad(hinge + gp, params, allow_unused=True)
    for a, b in zip(mine, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not ctx.batch["images"].requires_grad  # the batch was not switched to requires_grad in place


def test_dmain_combined_without_penalty():
    obj = DFGANObjective(DFGANObjectiveConfig(gp_weight=0.0))
    nets, ctx = begun(obj, "dfgan")
    loss, stats = obj.loss("Dmain", nets, ctx)
    sent = encode(nets, ctx.batch)[1]
    torch.testing.assert_close(loss, ref_hinge(nets.discriminator, ctx.batch["images"], sent,
                                               ctx.values["fake"])[0], rtol=1e-6, atol=1e-6)
    assert "d/gp" not in stats


def test_dreg_equals_ma_gp():
    obj = SSAGANObjective()
    nets, ctx = begun(obj, "ssagan")
    gp, stats = obj.loss("Dreg", nets, ctx)
    ref, norm = ref_ma_gp(nets.discriminator, ctx.batch["images"], encode(nets, ctx.batch)[1])
    torch.testing.assert_close(gp, ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats["d/gp_grad_norm"], norm, rtol=1e-5, atol=0)


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_d_phases_do_not_reach_the_generator(family):
    obj = OBJECTIVES.get(family)(OBJECTIVES.get(family).config_class(gp_schedule="separate"))
    nets, ctx = begun(obj, family)
    g_params = list(nets.generator.parameters())
    for phase in ("Dmain", "Dreg"):
        loss, _ = obj.loss(phase, nets, ctx)
        loss.backward()
        assert all(g is None or not g.any() for g in grads_of(g_params)), phase
        assert any(has_grad(p) for p in nets.discriminator.parameters())
    assert all(p.grad is None for p in nets.text_encoder.parameters())
    # the generator phase reuses begin()'s output, whose graph is still there
    loss, _ = obj.loss("Gmain", nets, ctx)
    loss.backward()
    assert any(has_grad(p) for p in g_params)
    assert nets.generator.fc.weight.grad.abs().sum() > 0


# -- Gmain ----------------------------------------------------------------------------------------------------------
def test_gmain_ssagan_adversarial_plus_damsm(monkeypatch):
    import t2igan.objectives.target_aware as target_aware

    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return damsm_loss(*args, **kwargs)

    monkeypatch.setattr(target_aware, "damsm_loss", spy)
    obj = SSAGANObjective()
    nets, ctx = begun(obj, "ssagan")
    nets.image_encoder.eval()
    loss, stats = obj.loss("Gmain", nets, ctx)
    words, sent = encode(nets, ctx.batch)
    fake = ctx.values["fake"]
    adv = -nets.discriminator(fake, sent).mean()
    regions, code = nets.image_encoder(fake)
    damsm = damsm_loss(regions, words, code, sent, ctx.batch["lengths"], ctx.batch["class_ids"],
                       gamma1=5.0, gamma2=5.0, gamma3=10.0).total
    torch.testing.assert_close(loss, adv + 0.05 * damsm, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["g/adv"], adv.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats["g/damsm"], damsm.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["g/loss"], loss.detach())
    # the smoothing factors of SSA-GAN (gamma1 barely moves the loss of these tiny encoders: check the call)
    (args, kwargs), = calls
    assert (kwargs["gamma1"], kwargs["gamma2"], kwargs["gamma3"]) == (5.0, 5.0, 10.0)
    assert kwargs.get("lam", 1.0) == 1.0
    assert args[5] is ctx.batch["class_ids"]
    # the class mask matters here (items 0 and 1 share a class)
    unmasked = damsm_loss(regions, words, code, sent, ctx.batch["lengths"], None,
                          gamma1=5.0, gamma2=5.0, gamma3=10.0).total
    assert abs(unmasked.item() - damsm.item()) > 0.1


def test_gmain_without_class_mask():
    obj = SSAGANObjective(SSAGANObjectiveConfig(damsm_class_mask=False, damsm_weight=0.5))
    nets, ctx = begun(obj, "ssagan")
    nets.image_encoder.eval()
    loss, _ = obj.loss("Gmain", nets, ctx)
    words, sent = encode(nets, ctx.batch)
    regions, code = nets.image_encoder(ctx.values["fake"])
    damsm = damsm_loss(regions, words, code, sent, ctx.batch["lengths"], None,
                       gamma1=5.0, gamma2=5.0, gamma3=10.0).total
    adv = -nets.discriminator(ctx.values["fake"], sent).mean()
    torch.testing.assert_close(loss, adv + 0.5 * damsm, rtol=1e-5, atol=1e-6)


def test_gmain_dfgan_adversarial_only():
    obj = DFGANObjective()
    nets, ctx = begun(obj, "dfgan")  # an image encoder is present, but the DAMSM weight is 0
    loss, stats = obj.loss("Gmain", nets, ctx)
    sent = encode(nets, ctx.batch)[1]
    ref = -nets.discriminator(ctx.values["fake"], sent).mean()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    assert "g/damsm" not in stats
    loss.backward()
    assert all(p.grad is None for p in nets.image_encoder.parameters())


# -- Emain (fine-tuning) --------------------------------------------------------------------------------------------
def test_emain_trains_text_encoder_and_projections():
    obj = SSAGANObjective(SSAGANObjectiveConfig(finetune_text_encoder=True))
    nets, ctx = begun(obj, "ssagan", dropout=0.5)
    te, ie = nets.text_encoder, nets.image_encoder
    te.eval()
    assert _encoder_params(nets) == [*te.parameters(), *ie.projection_parameters()]
    spec = obj.optimizers()["E"]
    assert [id(p) for p in spec.params(nets)] == [id(p) for p in [*te.parameters(), *ie.projection_parameters()]]
    assert len(ie.projection_parameters()) == 3  # emb_features.weight, emb_cnn_code.weight / .bias

    torch.manual_seed(3)
    loss, stats = obj.loss("Emain", nets, ctx)
    assert te.training is False  # restored
    torch.testing.assert_close(stats["e/damsm"], loss.detach())
    loss.backward()
    for name, p in te.named_parameters():
        assert has_grad(p), name
    for p in ie.projection_parameters():
        assert has_grad(p)
    assert all(p.grad is None for p in nets.generator.parameters())  # DAMSM of real images only
    assert all(p.grad is None for p in nets.discriminator.parameters())

    # the encoder runs in train mode (word dropout), unlike begin(): two Emain losses differ
    torch.manual_seed(4)
    again, _ = obj.loss("Emain", nets, ctx)
    assert abs(again.item() - loss.item()) > 1e-6


def test_emain_equals_damsm_of_real_images_without_dropout():
    obj = SSAGANObjective(SSAGANObjectiveConfig(finetune_text_encoder=True))
    nets, ctx = begun(obj, "ssagan", dropout=0.0)
    loss, _ = obj.loss("Emain", nets, ctx)
    words, sent = encode(nets, ctx.batch)  # no dropout: train and eval forwards agree
    regions, code = nets.image_encoder(ctx.batch["images"])
    ref = damsm_loss(regions, words, code, sent, ctx.batch["lengths"], ctx.batch["class_ids"],
                     gamma1=5.0, gamma2=5.0, gamma3=10.0).total
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


# -- config validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("lr_g", -1e-4), ("lr_d", 0.0), ("lr_e", -4e-5), ("mismatch_shift", 0),
                                         ("gp_weight", -2.0), ("damsm_weight", -0.05)])
def test_config_rejects_bad_values(field, value):
    for cls in (TargetAwareConfig, SSAGANObjectiveConfig, DFGANObjectiveConfig):
        with pytest.raises(ValueError, match=field):
            cls(**{field: value})
    with pytest.raises(ConfigError):
        from_dict(SSAGANObjectiveConfig, {field: value})


def test_config_unknown_key():
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(SSAGANObjectiveConfig, {"bogus": 1})
    with pytest.raises(ConfigError, match="gp_schedule"):
        from_dict(DFGANObjectiveConfig, {"gp_schedule": "twice"})


def test_config_from_dict_overrides():
    c = from_dict(SSAGANObjectiveConfig, {"gp_schedule": "combined", "betas": [0.5, 0.999], "lr_d": 2e-4})
    assert c.gp_schedule == "combined" and c.betas == (0.5, 0.999) and c.lr_d == 2e-4
    assert c.damsm_weight == 0.05  # the family default survives


def test_config_rejects_unknown_gp_schedule():
    with pytest.raises(ValueError, match="gp_schedule"):
        SSAGANObjectiveConfig(gp_schedule="seperate")  # type: ignore[arg-type]
