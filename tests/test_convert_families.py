"""Importing official AttnGAN and StackGAN-Pytorch checkpoints: fixtures reproduced through the importers, sizes of
the released checkpoints inferred, strict errors, convert_gan and `t2igan convert attngan|stackgan`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import load_official_fixture, max_abs_err, official_fixtures_dir
from t2igan.convert.official import convert_gan, import_attngan, import_stackgan
from t2igan.models.attngan import (
    AttnGANDiscriminator,
    AttnGANDiscriminatorConfig,
    AttnGANDiscriminators,
    AttnGANDiscriminatorsConfig,
    AttnGANGenerator,
    AttnGANGeneratorConfig,
)
from t2igan.models.base import ModelLoadError
from t2igan.models.damsm import TextEncoder, TextEncoderConfig
from t2igan.models.registry import COMPONENT_CLASSES, FAMILIES, read_model_dir, write_model_dir
from t2igan.models.stackgan import (
    StackGANDiscriminatorConfig,
    StackGANStage1Config,
    StackGANStage1Discriminator,
    StackGANStage1Generator,
    StackGANStage2Config,
    StackGANStage2Discriminator,
    StackGANStage2Generator,
)
from t2igan.pipeline import T2IPipeline
from t2igan.text.vocab import END_TOKEN

FIXTURES = official_fixtures_dir()
TOL = 1e-4
# As in test_models_attngan.py: AttnGAN's 256-px image passes ~40 float32 layers of random weights that amplify
# rounding (float64 lands 1.4e-4 from the stored float32 output), so it is compared to 2.5e-4; all else to TOL.
ATTN_STAGE_TOL = (TOL, TOL, 2.5e-4)
SIZES = (64, 128, 256)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def attn_fx() -> dict:
    return load_official_fixture("attngan_ngf8.pt")


@pytest.fixture(scope="module")
def stack_fx() -> dict:
    return load_official_fixture("stackgan_ngf8.pt")


@pytest.fixture(scope="module")
def text_fx() -> dict:
    return load_official_fixture("damsm_text_encoder_vocab40.pt")


def _as_2018(state: dict[str, torch.Tensor], *, prefix: bool) -> dict[str, torch.Tensor]:
    """A state dict without ``num_batches_tracked`` (PyTorch < 0.4.1), optionally ``module.``-prefixed."""
    head = "module." if prefix else ""
    return {head + k: v.clone() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _same_weights(module: nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> None:
    own = {k[len(prefix):]: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    assert own.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(own[k], v), k


def _counters_zero(module: nn.Module) -> None:
    counters = {k: v for k, v in module.state_dict().items() if k.endswith("num_batches_tracked")}
    assert counters and all(int(v) == 0 for v in counters.values())


def _write_captions(path: Path, n_words: int) -> Path:
    """An official captions.pickle ([train, test, ixtoword, wordtoix], protocol 2) with ``n_words`` words."""
    words = [END_TOKEN] + [f"w{i}" for i in range(1, n_words)]
    ixtoword = dict(enumerate(words))
    with open(path, "wb") as f:
        pickle.dump([[[1, 2, 3]], [[2, 1]], ixtoword, {w: i for i, w in ixtoword.items()}], f, protocol=2)
    return path


def _attn_files(tmp_path: Path, fx: dict, *, prefix: bool) -> tuple[Path, list[Path]]:
    g = _save(tmp_path / "netG_epoch_600.pth", _as_2018(fx["netG"], prefix=prefix))
    ds = [_save(tmp_path / f"netD{i}.pth", _as_2018(fx["netsD"][i], prefix=prefix)) for i in range(3)]
    return g, ds


# ------------------------------------------------------------------------------------------------ AttnGAN fixture


@pytest.mark.parametrize("prefix", [False, True])
def test_attngan_fixture_reproduced_from_files(tmp_path: Path, attn_fx, prefix):
    fx = attn_fx
    g_path, d_paths = _attn_files(tmp_path, fx, prefix=prefix)
    G, D = import_attngan(g_path, d_paths, attention_mask="official")
    assert isinstance(G, AttnGANGenerator) and isinstance(D, AttnGANDiscriminators)
    assert not G.training and not D.training
    assert G.config == AttnGANGeneratorConfig(gf_dim=8, z_dim=100, embedding_dim=100, text_dim=256, words_dim=256,
                                              r_num=2, branch_num=3, dcgan=False, attention_mask="official")
    assert D.config == AttnGANDiscriminatorsConfig(image_size=256, df_dim=4, text_dim=256, b_jcu=True)
    _counters_zero(G)
    _counters_zero(D)
    with torch.no_grad():
        out = G(fx["noise"], fx["sent_emb"], fx["words_emb"], fx["mask"], fx["eps"])
        logits = D(fx["images"], fx["sent_emb"])
        features = [stage(image) for stage, image in zip(D.stages, fx["images"])]
    assert len(out.images) == 3 and len(out.attention_maps) == 2
    for k, (ours, theirs) in enumerate(zip(out.images, fx["images"])):
        assert max_abs_err(ours, theirs) < ATTN_STAGE_TOL[k], k
    for ours, theirs in zip(out.attention_maps, fx["att_maps"]):
        assert max_abs_err(ours, theirs) < TOL
    for name in ("mu", "logvar", "c_code"):
        assert max_abs_err(getattr(out, name), fx[name]) < TOL, name
    assert len(logits) == 3
    for k, (cond, uncond) in enumerate(logits):
        assert max_abs_err(features[k], fx["d_features"][k]) < TOL
        assert max_abs_err(cond, fx["d_cond_logits"][k]) < TOL
        assert uncond is not None and max_abs_err(uncond, fx["d_uncond_logits"][k]) < TOL


def test_attngan_default_own_mask_equals_official_at_batch_one(attn_fx):
    """The importer's default masking is "own"; for a batch of one it computes what the official code does."""
    fx = attn_fx
    G_own, _ = import_attngan(_as_2018(fx["netG"], prefix=False))
    G_off, _ = import_attngan(fx["netG"], attention_mask="official")
    assert G_own.attention_mask == "own"
    args = ("noise", "sent_emb", "words_emb", "mask", "eps")
    with torch.no_grad():
        batch3 = G_own(*(fx[a] for a in args))
        for b in range(3):
            own = G_own(*(fx[a][b:b + 1] for a in args))
            off = G_off(*(fx[a][b:b + 1] for a in args))
            for k, (x, y) in enumerate(zip(own.images, off.images)):
                assert max_abs_err(x, y) < 1e-6
                assert max_abs_err(x[0], batch3.images[k][b]) < ATTN_STAGE_TOL[k]  # independent of the batch
            for x, y in zip(own.attention_maps, off.attention_maps):
                assert max_abs_err(x, y) < 1e-6
    # at batch 3 the official quirk matters (captions of different lengths), which is why "official" exists
    assert max_abs_err(batch3.images[1], fx["images"][1]) > 1e-2


# ------------------------------------------------------------------------------------------------ StackGAN fixture


@pytest.mark.parametrize("prefix", [False, True])
def test_stackgan_fixture_reproduced_from_files(tmp_path: Path, stack_fx, prefix):
    fx = stack_fx
    paths = {name: _save(tmp_path / f"{name}.pth", _as_2018(fx[name], prefix=prefix))
             for name in ("netG1", "netD1", "netG2", "netD2")}
    common = dict(nz=100, text_dim=1024, cond_dim=128)

    G1, D1 = import_stackgan(paths["netG1"], paths["netD1"])
    assert type(G1) is StackGANStage1Generator and type(D1) is StackGANStage1Discriminator
    assert not G1.training and not D1.training
    assert G1.config == StackGANStage1Config(ngf=8, **common)
    assert D1.config == StackGANDiscriminatorConfig(ndf=8, cond_dim=128)
    _counters_zero(G1)
    _counters_zero(D1)
    with torch.no_grad():
        image1, mu1, logvar1 = G1(fx["noise"], fx["text_embedding"], eps=fx["eps1"])
        features1 = D1(fx["image1"])
        cond1, uncond1 = D1(fx["image1"], fx["mu1"])
    assert max_abs_err(image1, fx["image1"]) < TOL
    assert max_abs_err(mu1, fx["mu1"]) < TOL and max_abs_err(logvar1, fx["logvar1"]) < TOL
    assert max_abs_err(features1, fx["d1_features"]) < TOL
    assert max_abs_err(cond1, fx["d1_cond_logits"]) < TOL and uncond1 is None

    G2, D2 = import_stackgan(paths["netG2"], paths["netD2"])
    assert type(G2) is StackGANStage2Generator and type(D2) is StackGANStage2Discriminator
    assert G2.config == StackGANStage2Config(ngf=8, r_num=2, stage1_ngf=None, **common)
    _counters_zero(G2)
    with torch.no_grad():
        image2_lr, image2, mu2, logvar2 = G2(fx["noise"], fx["text_embedding"], fx["eps1"], fx["eps2"])
        features2 = D2(fx["image2"])
        cond2, uncond2 = D2(fx["image2"], fx["mu2"])
    assert max_abs_err(image2_lr, fx["image2_lr"]) < TOL
    assert max_abs_err(image2, fx["image2"]) < TOL
    assert max_abs_err(mu2, fx["mu2"]) < TOL and max_abs_err(logvar2, fx["logvar2"]) < TOL
    assert max_abs_err(features2, fx["d2_features"]) < TOL
    assert max_abs_err(cond2, fx["d2_cond_logits"]) < TOL
    assert uncond2 is not None and max_abs_err(uncond2, fx["d2_uncond_logits"]) < TOL


def test_stackgan_generator_alone(stack_fx):
    G, D = import_stackgan(stack_fx["netG2"])
    assert D is None and isinstance(G, StackGANStage2Generator)
    _same_weights(G, stack_fx["netG2"])


# ------------------------------------------------------------------------------------------------ released sizes


def _shapes() -> dict[str, dict[str, list[int]]]:
    path = FIXTURES / "state_dict_shapes.json"
    if not path.is_file():
        pytest.skip(f"official fixture not available: {path}")
    return json.loads(path.read_text())


def _meta_state(name: str) -> dict[str, torch.Tensor]:
    """The released key list as storage-free meta tensors, without ``num_batches_tracked`` (2018 files)."""
    return {k: torch.empty(s, device="meta") for k, s in _shapes()[name].items()
            if not k.endswith("num_batches_tracked")}


ATTN_BIRD = AttnGANGeneratorConfig(gf_dim=32, z_dim=100, embedding_dim=100, text_dim=256, words_dim=256, r_num=2,
                                   branch_num=3)


@pytest.mark.parametrize("g_name,d_names,g_config,d_config", [
    ("attngan_netG_ngf32_bird", [f"attngan_netD{s}_ndf64_bird" for s in SIZES], ATTN_BIRD,
     AttnGANDiscriminatorsConfig(image_size=256, df_dim=64, text_dim=256, b_jcu=True)),
    ("attngan_netG_ngf48_coco", [f"attngan_netD{s}_ndf96_coco" for s in SIZES], ATTN_BIRD.replace(gf_dim=48, r_num=3),
     AttnGANDiscriminatorsConfig(image_size=256, df_dim=96, text_dim=256, b_jcu=True)),
    ("attngan_G_DCGAN_ngf32_bird", None, ATTN_BIRD.replace(r_num=0, dcgan=True), None),
])
def test_attngan_released_sizes(g_name, d_names, g_config, d_config):
    """Every key of the released files is used and fits (on the meta device: no memory for the big Ds)."""
    with torch.device("meta"):
        G, D = import_attngan(_meta_state(g_name), None if d_names is None else [_meta_state(n) for n in d_names])
    assert G.config == g_config
    assert (D is None and d_config is None) or D.config == d_config


@pytest.mark.parametrize("g_name,d_name,g_config", [
    ("stackgan_stage1_netG_ngf192_coco", "stackgan_stage1_netD_ndf96_coco",
     StackGANStage1Config(ngf=192, nz=100, text_dim=1024, cond_dim=128)),
    ("stackgan_stage2_netG_ngf192_coco", "stackgan_stage2_netD_ndf96_coco",
     StackGANStage2Config(ngf=192, nz=100, text_dim=1024, cond_dim=128, r_num=2)),
])
def test_stackgan_released_sizes(g_name, d_name, g_config):
    with torch.device("meta"):
        G, D = import_stackgan(_meta_state(g_name), _meta_state(d_name))
    assert G.config == g_config
    assert D.config == StackGANDiscriminatorConfig(ndf=96, cond_dim=128)
    assert type(D) is (StackGANStage2Discriminator if isinstance(G, StackGANStage2Generator)
                       else StackGANStage1Discriminator)


def test_released_bird_generator_loads_on_cpu(tmp_path: Path):
    """The released CUB key list as a real file of zero tensors (28 MB), without counters."""
    state = {k: torch.zeros(s) for k, s in _shapes()["attngan_netG_ngf32_bird"].items()
             if not k.endswith("num_batches_tracked")}
    G, D = import_attngan(_save(tmp_path / "bird_AttnGAN2.pth", state))
    assert D is None and G.config == ATTN_BIRD
    _counters_zero(G)
    assert all(not v.any() for v in G.state_dict().values())


# ------------------------------------------------------------------------------------------------ inference round trips


@pytest.mark.parametrize("g_config,d_config", [
    (AttnGANGeneratorConfig(gf_dim=4, z_dim=16, embedding_dim=6, text_dim=12, words_dim=10, r_num=1, branch_num=2),
     AttnGANDiscriminatorsConfig(image_size=128, df_dim=2, text_dim=12, b_jcu=False)),
    (AttnGANGeneratorConfig(gf_dim=2, z_dim=8, embedding_dim=4, text_dim=12, r_num=3, branch_num=1),
     AttnGANDiscriminatorsConfig(image_size=64, df_dim=3, text_dim=12)),
])
def test_attngan_configs_inferred(g_config, d_config):
    torch.manual_seed(0)
    G0, D0 = AttnGANGenerator(g_config), AttnGANDiscriminators(d_config)
    G, D = import_attngan(G0.state_dict(), [s.state_dict() for s in D0.stages])
    expected = g_config.replace(r_num=0, words_dim=g_config.text_dim) if g_config.branch_num == 1 else g_config
    assert G.config == expected and D.config == d_config
    _same_weights(G, G0.state_dict())
    _same_weights(D, D0.state_dict())


def test_attngan_dcgan_with_its_single_discriminator():
    """AttnDCGAN: R_NUM 0, one img_net, and (as the official trainer builds it) one D_NET256 without UNCOND_DNET."""
    torch.manual_seed(0)
    g_config = AttnGANGeneratorConfig(gf_dim=2, z_dim=8, embedding_dim=4, text_dim=12, words_dim=12, r_num=0,
                                      branch_num=3, dcgan=True)
    G0 = AttnGANGenerator(g_config)
    D0 = AttnGANDiscriminator(AttnGANDiscriminatorConfig(image_size=256, df_dim=2, text_dim=12, b_jcu=False))
    G, D = import_attngan(G0.state_dict(), [D0.state_dict()])
    assert G.config == g_config and isinstance(D, AttnGANDiscriminator) and D.config == D0.config
    _same_weights(D, D0.state_dict())
    with pytest.raises(ModelLoadError, match=r"AttnDCGAN.*1 discriminator file.*256 px.*got 3"):
        import_attngan(G0.state_dict(), [D0.state_dict()] * 3)


def test_stackgan_configs_inferred():
    torch.manual_seed(0)
    s2 = StackGANStage2Config(ngf=4, nz=6, text_dim=10, cond_dim=3, r_num=1, stage1_ngf=6)
    d_config = StackGANDiscriminatorConfig(ndf=2, cond_dim=3)
    G0, D0 = StackGANStage2Generator(s2), StackGANStage2Discriminator(d_config)
    G, D = import_stackgan(G0.state_dict(), D0.state_dict())
    assert G.config == s2 and D.config == d_config
    _same_weights(G, G0.state_dict())
    s1 = StackGANStage1Config(ngf=2, nz=5, text_dim=7, cond_dim=4)
    G1, _ = import_stackgan(StackGANStage1Generator(s1).state_dict())
    assert G1.config == s1


# ------------------------------------------------------------------------------------------------ errors


def test_attngan_strict_errors_name_the_key(attn_fx):
    netG = dict(attn_fx["netG"])
    missing = {k: v for k, v in netG.items() if k != "h_net2.residual.1.block.4.bias"}
    with pytest.raises(ModelLoadError, match=r"<netG state dict>.*missing 1 tensors: h_net2\.residual\.1\.block\.4\.bias"):
        import_attngan(missing)
    extra = dict(netG, **{"h_net3.residual.2.block.0.weight": torch.zeros(32, 16, 3, 3)})
    with pytest.raises(ModelLoadError, match=r"unexpected 1 tensors: h_net3\.residual\.2\.block\.0\.weight"):
        import_attngan(extra)
    bad = dict(netG, **{"img_net2.img.0.weight": torch.zeros(3, 7, 3, 3)})
    with pytest.raises(ModelLoadError, match=r"'img_net2\.img\.0\.weight'.*\(3, 7, 3, 3\).*\(3, 8, 3, 3\)"):
        import_attngan(bad)
    with pytest.raises(ModelLoadError, match=r"missing tensor 'ca_net\.fc\.weight'"):
        import_attngan({k: v for k, v in netG.items() if not k.startswith("ca_net.")})
    renamed = {k.replace("h_net3.", "h_net4."): v for k, v in netG.items()}
    with pytest.raises(ModelLoadError, match=r"'h_net\{i\}' stages are numbered \[1, 2, 4\]"):
        import_attngan(renamed)
    bad_fc = dict(netG, **{"h_net1.fc.0.weight": torch.zeros(4000, 200)})
    with pytest.raises(ModelLoadError, match=r"'h_net1\.fc\.0\.weight'.*4000 is not a positive multiple of 512"):
        import_attngan(bad_fc)


def test_attngan_discriminator_errors(tmp_path: Path, attn_fx):
    netG, netsD = attn_fx["netG"], attn_fx["netsD"]
    d1 = _save(tmp_path / "netD1.pth", {k: v for k, v in netsD[1].items() if k != "img_code_s32_1.1.running_var"})
    with pytest.raises(ModelLoadError, match=r"netD1\.pth.*missing 1 tensors: img_code_s32_1\.1\.running_var"):
        import_attngan(netG, [netsD[0], d1, netsD[2]])
    d2 = dict(netsD[2], **{"COND_DNET.outlogits.0.weight": torch.zeros(1, 32, 3, 3)})
    with pytest.raises(ModelLoadError, match=r"<netD2 state dict>.*'COND_DNET\.outlogits\.0\.weight'.*\(1, 32, 3, 3\)"):
        import_attngan(netG, [netsD[0], netsD[1], d2])
    d0 = dict(netsD[0], **{"UNCOND_DNET.extra.weight": torch.zeros(1)})
    with pytest.raises(ModelLoadError, match=r"<netD0 state dict>.*unexpected 1 tensors: UNCOND_DNET\.extra\.weight"):
        import_attngan(netG, [d0, netsD[1], netsD[2]])
    with pytest.raises(ModelLoadError, match=r"3 stages: it needs 3 discriminator file\(s\).*got 2"):
        import_attngan(netG, netsD[:2])
    with pytest.raises(ModelLoadError, match=r"<netD1 state dict>: is a D_NET256.*scores 128 px.*stage order"):
        import_attngan(netG, [netsD[0], netsD[2], netsD[1]])
    with pytest.raises(ValueError, match="list of netD"):
        import_attngan(netG, netsD[0])
    with pytest.raises(ValueError, match="attention_mask must be one of own, official"):
        import_attngan(netG, attention_mask="paper")


def test_stackgan_strict_errors_name_the_key(stack_fx):
    netG2 = dict(stack_fx["netG2"])
    missing = {k: v for k, v in netG2.items() if k != "STAGE1_G.upsample3.2.running_mean"}
    with pytest.raises(ModelLoadError, match=r"missing 1 tensors: STAGE1_G\.upsample3\.2\.running_mean"):
        import_stackgan(missing)
    partial = dict(netG2, **{"residual.2.block.0.weight": torch.zeros(32, 32, 3, 3)})  # R_NUM 3, but a torso
    with pytest.raises(ModelLoadError, match=r"missing 9 tensors: residual\.2\.block\.1\.weight"):
        import_stackgan(partial)
    extra = dict(netG2, **{"encoder.0.bias": torch.zeros(8)})
    with pytest.raises(ModelLoadError, match=r"unexpected 1 tensors: encoder\.0\.bias"):
        import_stackgan(extra)
    bad = dict(netG2, **{"STAGE1_G.img.0.weight": torch.zeros(3, 5, 3, 3)})
    with pytest.raises(ModelLoadError, match=r"'STAGE1_G\.img\.0\.weight'.*\(3, 5, 3, 3\).*\(3, 4, 3, 3\)"):
        import_stackgan(bad)
    bad_ca = dict(netG2, **{"ca_net.fc.weight": torch.zeros(256, 512), "ca_net.fc.bias": torch.zeros(256)})
    with pytest.raises(ModelLoadError, match=r"'ca_net\.fc\.weight' has shape \(256, 512\).*'STAGE1_G\.ca_net"):
        import_stackgan(bad_ca)
    d2 = {k: v for k, v in stack_fx["netD2"].items() if not k.startswith("get_uncond_logits.")}
    with pytest.raises(ModelLoadError, match=r"<netD state dict>.*missing 2 tensors: "
                                             r"get_uncond_logits\.outlogits\.0\.weight"):
        import_stackgan(netG2, d2)
    with pytest.raises(ModelLoadError, match=r"stage-II \(256 px\) but the discriminator .* stage-I \(64 px\)"):
        import_stackgan(netG2, stack_fx["netD1"])
    with pytest.raises(ModelLoadError, match=r"stage-I \(64 px\) but the discriminator .* stage-II"):
        import_stackgan(stack_fx["netG1"], stack_fx["netD2"])


# ------------------------------------------------------------------------------------------------ convert_gan


def test_convert_gan_attngan(tmp_path: Path, attn_fx, text_fx):
    fx = attn_fx
    g_path, d_paths = _attn_files(tmp_path, fx, prefix=False)
    te_path = _save(tmp_path / "text_encoder200.pth", text_fx["text_encoder"])
    captions = _write_captions(tmp_path / "captions.pickle", 40)
    out = convert_gan("attngan", netG=g_path, netD=d_paths, text_encoder=te_path, captions=captions,
                      out_dir=tmp_path / "model", words_num=25)
    md = read_model_dir(out)
    assert md.family == "attngan" and md.meta["condition"] == "damsm" and md.meta["words_num"] == 25
    assert md.meta["components"] == {"generator": "AttnGANGenerator", "discriminator": "AttnGANDiscriminators",
                                     "text_encoder": "TextEncoder"}
    assert md.meta["source"] == {"netG": str(g_path), "netD": [str(p) for p in d_paths],
                                 "text_encoder": str(te_path), "captions": str(captions)}
    assert len(md.vocab) == 40
    G = md.components["generator"].eval()
    G.set_attention_mask("official")
    with torch.no_grad():
        out_g = G(fx["noise"], fx["sent_emb"], fx["words_emb"], fx["mask"], fx["eps"])
    for k, (ours, theirs) in enumerate(zip(out_g.images, fx["images"])):
        assert max_abs_err(ours, theirs) < ATTN_STAGE_TOL[k]
    for k in range(3):
        _same_weights(md.components["discriminator"].stages[k], fx["netsD"][k])


def test_convert_gan_attngan_refusals(tmp_path: Path, attn_fx, text_fx):
    out = tmp_path / "model"
    captions = _write_captions(tmp_path / "captions.pickle", 40)
    with pytest.raises(ValueError, match="needs text_encoder"):
        convert_gan("attngan", netG=attn_fx["netG"], captions=captions, out_dir=out)
    small_te = TextEncoder(TextEncoderConfig(vocab_size=40, word_dim=8, hidden=16)).state_dict()
    with pytest.raises(ValueError, match=r"256-d sentence embeddings.*256-d word embeddings.*produces 16-d"):
        convert_gan("attngan", netG=attn_fx["netG"], text_encoder=small_te, captions=captions, out_dir=out)
    with pytest.raises(ValueError, match="list of"):
        convert_gan("attngan", netG=attn_fx["netG"], netD=attn_fx["netsD"][0], text_encoder=text_fx["text_encoder"],
                    captions=captions, out_dir=out)
    with pytest.raises(ValueError, match="needs netG"):
        convert_gan("attngan", text_encoder=text_fx["text_encoder"], captions=captions, out_dir=out)
    assert not out.exists()


def test_convert_gan_stackgan_without_text_encoder(tmp_path: Path, stack_fx):
    fx = stack_fx
    g_path = _save(tmp_path / "netG_epoch_90.pth", _as_2018(fx["netG2"], prefix=False))
    d_path = _save(tmp_path / "netD_epoch_last.pth", _as_2018(fx["netD2"], prefix=False))
    out = convert_gan("stackgan", netG=g_path, netD=d_path, out_dir=tmp_path / "model")
    assert not (out / "text_encoder").exists() and not (out / "vocab.json").exists()
    md = read_model_dir(out)
    assert md.family == "stackgan" and md.vocab is None
    assert md.meta["condition"] == "char-cnn-rnn" and md.meta["stage"] == 2 and "words_num" not in md.meta
    assert md.meta["components"] == {"generator": "StackGANStage2Generator",
                                     "discriminator": "StackGANStage2Discriminator"}
    G = read_model_dir(out, components=("generator",)).components["generator"].eval()
    with torch.no_grad():
        _, image2, _, _ = G(fx["noise"], fx["text_embedding"], fx["eps1"], fx["eps2"])
    assert max_abs_err(image2, fx["image2"]) < TOL
    with pytest.raises(ModelLoadError, match=r"cannot take a free-text prompt.*char-cnn-rnn"):
        T2IPipeline.from_pretrained(out)


def test_convert_gan_stackgan_with_text_encoder(tmp_path: Path, stack_fx, text_fx):
    captions = _write_captions(tmp_path / "captions.pickle", 40)
    te = text_fx["text_encoder"]
    with pytest.raises(ValueError, match=r"1024-d text embeddings.*produces 256-d.*leave the text encoder out"):
        convert_gan("stackgan", netG=stack_fx["netG1"], text_encoder=te, captions=captions, out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="captions were given without a text encoder"):
        convert_gan("stackgan", netG=stack_fx["netG1"], captions=captions, out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="netD of a stackgan model is one file or state dict"):
        convert_gan("stackgan", netG=stack_fx["netG1"], netD=[stack_fx["netD1"]], out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    torch.manual_seed(0)
    G0 = StackGANStage1Generator(StackGANStage1Config(ngf=4, nz=10, text_dim=256, cond_dim=8))
    out = convert_gan("stackgan", netG=G0.state_dict(), text_encoder=te, captions=captions, out_dir=tmp_path / "m")
    md = read_model_dir(out)
    assert md.meta["condition"] == "damsm" and md.meta["stage"] == 1 and len(md.vocab) == 40
    assert isinstance(md.components["generator"], StackGANStage1Generator)
    assert isinstance(md.components["text_encoder"], TextEncoder)


def test_registry_knows_the_families():
    assert FAMILIES.get("attngan").generator is AttnGANGenerator
    assert FAMILIES.get("attngan").discriminator is AttnGANDiscriminators and FAMILIES.get("attngan").has_masks
    assert FAMILIES.get("stackgan").generator is StackGANStage2Generator
    assert FAMILIES.get("stackgan").discriminator is StackGANStage2Discriminator
    for cls in (AttnGANGenerator, AttnGANDiscriminators, AttnGANDiscriminator, StackGANStage1Generator,
                StackGANStage2Generator, StackGANStage1Discriminator, StackGANStage2Discriminator):
        assert COMPONENT_CLASSES[cls.__name__] is cls


def test_model_dir_without_text_encoder_needs_a_condition(tmp_path: Path):
    G = StackGANStage1Generator(StackGANStage1Config(ngf=2, nz=4, text_dim=6, cond_dim=2))
    with pytest.raises(ValueError, match="needs a 'text_encoder' component"):
        write_model_dir(tmp_path / "m", "stackgan", {"generator": G}, None)
    write_model_dir(tmp_path / "m", "stackgan", {"generator": G}, None, condition="char-cnn-rnn")
    meta = json.loads((tmp_path / "m" / "pipeline.json").read_text())
    del meta["condition"]
    (tmp_path / "m" / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="must name at least 'generator' and 'text_encoder'"):
        read_model_dir(tmp_path / "m")


def test_attngan_discriminators_module():
    D = AttnGANDiscriminators(AttnGANDiscriminatorsConfig(image_size=128, df_dim=2, text_dim=6))
    assert [s.config.image_size for s in D.stages] == [64, 128]
    with pytest.raises(ValueError, match="expected 2 images"):
        D([torch.zeros(1, 3, 64, 64)], torch.zeros(1, 6))
    with pytest.raises(ValueError, match="image_size"):
        AttnGANDiscriminatorsConfig(image_size=96)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_convert_attngan_and_stackgan(tmp_path: Path, attn_fx, stack_fx, text_fx, capsys):
    from t2igan.cli import main

    g_path, d_paths = _attn_files(tmp_path, attn_fx, prefix=True)
    te_path = _save(tmp_path / "text_encoder200.pth", text_fx["text_encoder"])
    captions = _write_captions(tmp_path / "captions.pickle", 40)
    attn_out = tmp_path / "attn"
    args = ["convert", "attngan", "--netG", str(g_path)]
    for p in d_paths:
        args += ["--netD", str(p)]
    assert main([*args, "--text-encoder", str(te_path), "--captions", str(captions), "--out", str(attn_out)]) == 0
    md = read_model_dir(attn_out)
    assert md.family == "attngan" and isinstance(md.components["discriminator"], AttnGANDiscriminators)
    assert md.meta["source"]["netD"] == [str(p) for p in d_paths]

    g2 = _save(tmp_path / "netG_epoch_90.pth", stack_fx["netG2"])
    d2 = _save(tmp_path / "netD_epoch_last.pth", stack_fx["netD2"])
    stack_out = tmp_path / "stack"
    assert main(["convert", "stackgan", "--netG", str(g2), "--netD", str(d2), "--out", str(stack_out)]) == 0
    assert "no text encoder" in capsys.readouterr().out
    md = read_model_dir(stack_out)
    assert md.family == "stackgan" and set(md.components) == {"generator", "discriminator"}
    _same_weights(md.components["generator"], stack_fx["netG2"])
    assert main(["sample", "--model", str(stack_out), "--prompt", "a bird", "--out", str(tmp_path / "s")]) == 2
    assert "cannot take a free-text prompt" in capsys.readouterr().err
    # a stage mismatch and captions without an encoder are refused with exit status 2
    assert main(["convert", "stackgan", "--netG", str(g2), "--netD", str(_save(tmp_path / "d1.pth", stack_fx["netD1"])),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "stage-I" in capsys.readouterr().err
    assert main(["convert", "stackgan", "--netG", str(g2), "--captions", str(captions), "--out",
                 str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_synthesize_is_the_official_forward_with_its_noise_appended():
    """GeneratorBase.synthesize (what the pipeline calls): z and the CA noise in one vector per image."""
    from t2igan.models.base import TextCondition

    fx = load_official_fixture("attngan_ngf8.pt")
    g = import_attngan(fx["netG"], attention_mask="official")[0]
    noise = torch.cat([fx["noise"], fx["eps"]], 1)
    assert g.noise_dim == noise.shape[1]
    img, maps = g.synthesize(noise, TextCondition(fx["sent_emb"], fx["words_emb"], fx["mask"]))
    assert (img - fx["images"][-1]).abs().max() < 2.5e-4 and len(maps) == 2
    sx = load_official_fixture("stackgan_ngf8.pt")
    g2 = import_stackgan(sx["netG2"])[0]
    noise2 = torch.cat([sx["noise"], sx["eps1"], sx["eps2"]], 1)
    assert g2.noise_dim == noise2.shape[1]
    img2, none = g2.synthesize(noise2, TextCondition(sx["text_embedding"]))
    assert none is None and (img2 - sx["image2"]).abs().max() < 1e-4
    g1 = import_stackgan(sx["netG1"])[0]
    img1, _ = g1.synthesize(torch.cat([sx["noise"], sx["eps1"]], 1), TextCondition(sx["text_embedding"]))
    assert (img1 - sx["image1"]).abs().max() < 1e-4


def test_a_file_of_another_family_is_named(tmp_path):
    """Feeding one family's checkpoint to another's importer says which command fits the file."""
    from t2igan.convert.official import import_dfgan, import_ssagan
    from t2igan.models.base import ModelLoadError

    ssa = load_official_fixture("ssagan_ngf8.pt")
    dfg = load_official_fixture("dfgan_ngf8.pt")
    att = load_official_fixture("attngan_ngf8.pt")
    stk = load_official_fixture("stackgan_ngf8.pt")
    torch.save({"model": {"netG": dfg["netG"]}, "epoch": 3}, tmp_path / "state_epoch_3.pth")
    with pytest.raises(ModelLoadError, match="DF-GAN state_epoch file: use `t2igan convert dfgan"):
        import_ssagan(tmp_path / "state_epoch_3.pth")
    with pytest.raises(ModelLoadError, match="SSA-GAN netG: use `t2igan convert ssagan"):
        import_dfgan({f"module.{k}": v for k, v in ssa["netG"].items()})
    with pytest.raises(ModelLoadError, match="AttnGAN netG: use `t2igan convert attngan"):
        import_ssagan(att["netG"])
    with pytest.raises(ModelLoadError, match="StackGAN stage-II netG"):
        import_attngan(stk["netG2"])
    with pytest.raises(ModelLoadError, match="StackGAN stage-I netG"):
        import_ssagan(stk["netG1"])
