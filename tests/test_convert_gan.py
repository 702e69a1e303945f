"""Importing official SSA-GAN / DF-GAN checkpoints: fixtures reproduced, sizes inferred, strict errors, convert_gan."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import load_official_fixture, max_abs_err, official_fixtures_dir
from t2igan.convert import convert_gan, import_dfgan, import_ssagan
from t2igan.models.base import ModelLoadError
from t2igan.models.dfgan import (
    DFGANDiscriminator,
    DFGANDiscriminatorConfig,
    DFGANGenerator,
    DFGANGeneratorConfig,
)
from t2igan.models.registry import read_model_dir
from t2igan.models.ssagan import (
    SSAGANDiscriminator,
    SSAGANDiscriminatorConfig,
    SSAGANGenerator,
    SSAGANGeneratorConfig,
)
from t2igan.text.vocab import END_TOKEN, Vocabulary

FIXTURES = official_fixtures_dir()
TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


_fixture = load_official_fixture


@pytest.fixture(scope="module")
def ssagan_fx() -> dict:
    return _fixture("ssagan_ngf8.pt")


@pytest.fixture(scope="module")
def dfgan_fx() -> dict:
    return _fixture("dfgan_ngf8.pt")


@pytest.fixture(scope="module")
def text_fx() -> dict:
    return _fixture("damsm_text_encoder_vocab40.pt")


def _prefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as saved from a DataParallel / DDP wrapper."""
    return {f"module.{k}": v.clone() for k, v in state.items()}


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path




def _adam_state() -> dict:
    """A real optimizer state dict (step counts, moments, param_groups), as DF-GAN saves them."""
    lin = nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-4, betas=(0.0, 0.9))
    lin(torch.ones(4, 3)).sum().backward()
    opt.step()
    return opt.state_dict()


def _state_epoch(fx: dict, *, prefix: bool = True) -> dict:
    wrap = _prefixed if prefix else (lambda s: {k: v.clone() for k, v in s.items()})
    return {"model": {"netG": wrap(fx["netG"]), "netD": wrap(fx["netD"]), "netC": wrap(fx["netC"])},
            "optimizers": {"optimizer_G": _adam_state(), "optimizer_D": _adam_state()}, "epoch": 3}


def _write_captions(path: Path, n_words: int) -> Path:
    """An official captions.pickle ([train, test, ixtoword, wordtoix], protocol 2) with ``n_words`` words."""
    words = [END_TOKEN] + [f"w{i}" for i in range(1, n_words)]
    ixtoword = dict(enumerate(words))
    wordtoix = {w: i for i, w in ixtoword.items()}
    with open(path, "wb") as f:
        pickle.dump([[[1, 2, 3]], [[2, 1]], ixtoword, wordtoix], f, protocol=2)
    return path


# ------------------------------------------------------------------------------------------------ fixtures reproduced


def test_ssagan_fixture_reproduced_from_prefixed_files(tmp_path: Path, ssagan_fx):
    fx = ssagan_fx
    g_path = _save(tmp_path / "netG_550.pth", _prefixed(fx["netG"]))
    d_path = _save(tmp_path / "netD_550.pth", _prefixed(fx["netD"]))
    G, D = import_ssagan(g_path, d_path)
    assert isinstance(G, SSAGANGenerator) and isinstance(D, SSAGANDiscriminator)
    assert not G.training and not D.training
    assert G.config == SSAGANGeneratorConfig(ngf=8, nz=100, cond_dim=256, image_size=256, mask_hidden=100)
    assert D.config == SSAGANDiscriminatorConfig(ndf=8, cond_dim=256, image_size=256)
    with torch.no_grad():
        image, masks = G(fx["noise"], fx["sent_emb"])
        features = D(fx["image"])
        logits = D(features=features, sent_emb=fx["sent_emb"])
    assert max_abs_err(image, fx["image"]) < TOL
    assert len(masks) == len(fx["masks"]) == 7
    for ours, theirs in zip(masks, fx["masks"]):
        assert max_abs_err(ours, theirs) < TOL
    assert max_abs_err(features, fx["d_features"]) < TOL
    assert max_abs_err(logits, fx["d_logits"].reshape(-1)) < TOL


def test_dfgan_fixture_reproduced_from_state_epoch(tmp_path: Path, dfgan_fx):
    fx = dfgan_fx
    path = _save(tmp_path / "state_epoch_3.pth", _state_epoch(fx))
    G, D = import_dfgan(path)
    assert isinstance(G, DFGANGenerator) and isinstance(D, DFGANDiscriminator)
    assert not G.training and not D.training
    assert G.config == DFGANGeneratorConfig(ngf=8, nz=100, cond_dim=256, image_size=256)
    assert D.config == DFGANDiscriminatorConfig(ndf=8, cond_dim=256, image_size=256)
    with torch.no_grad():
        image = G(fx["noise"], fx["sent_emb"])
        features = D(fx["image"])
        logits = D(features=features, sent_emb=fx["sent_emb"])
    assert max_abs_err(image, fx["image"]) < TOL
    assert max_abs_err(features, fx["d_features"]) < TOL
    assert max_abs_err(logits, fx["d_logits"].reshape(-1)) < TOL


def test_dfgan_bare_netg_and_loaded_dict(tmp_path: Path, dfgan_fx):
    G, D = import_dfgan(_save(tmp_path / "netG.pth", _prefixed(dfgan_fx["netG"])))
    assert D is None and G.config.ngf == 8
    for k, v in dfgan_fx["netG"].items():
        assert torch.equal(G.state_dict()[k], v), k
    G2, D2 = import_dfgan(_state_epoch(dfgan_fx, prefix=False))  # an already loaded dict, no prefix
    assert D2 is not None and torch.equal(D2.C.joint_conv[0].weight, dfgan_fx["netC"]["joint_conv.0.weight"])


# ------------------------------------------------------------------------------------------------ config inference


def _same_weights(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    assert own.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(own[k], v), k


@pytest.mark.parametrize("g_config,d_config", [
    (SSAGANGeneratorConfig(ngf=16, image_size=128), SSAGANDiscriminatorConfig(ndf=16, image_size=128)),
    (SSAGANGeneratorConfig(ngf=8, nz=32, cond_dim=64, image_size=64, mask_hidden=20),
     SSAGANDiscriminatorConfig(ndf=8, cond_dim=64, image_size=64)),
])
def test_ssagan_config_inferred(g_config, d_config):
    torch.manual_seed(0)
    G0, D0 = SSAGANGenerator(g_config), SSAGANDiscriminator(d_config)
    G, D = import_ssagan(_prefixed(G0.state_dict()), D0.state_dict())
    assert G.config == g_config and D.config == d_config
    _same_weights(G, G0.state_dict())
    _same_weights(D, D0.state_dict())


@pytest.mark.parametrize("g_config,d_config", [
    (DFGANGeneratorConfig(ngf=16, image_size=64), DFGANDiscriminatorConfig(ndf=16, image_size=64)),
    (DFGANGeneratorConfig(ngf=8, nz=32, cond_dim=64, image_size=128),
     DFGANDiscriminatorConfig(ndf=4, cond_dim=64, image_size=128)),
])
def test_dfgan_config_inferred(g_config, d_config):
    torch.manual_seed(0)
    G0, D0 = DFGANGenerator(g_config), DFGANDiscriminator(d_config)
    ckpt = {"model": {"netG": _prefixed(G0.state_dict()), "netD": _prefixed(D0.D.state_dict()),
                      "netC": _prefixed(D0.C.state_dict())}, "epoch": 1}
    G, D = import_dfgan(ckpt)
    assert G.config == g_config and D.config == d_config
    _same_weights(G, G0.state_dict())
    _same_weights(D, D0.state_dict())


# ------------------------------------------------------------------------------------------------ errors


def test_ssagan_strict_errors(ssagan_fx):
    netG = dict(ssagan_fx["netG"])
    bad = dict(netG, **{"block3.c1.weight": torch.zeros(64, 63, 3, 3)})
    with pytest.raises(ModelLoadError, match=r"block3\.c1\.weight.*\(64, 63, 3, 3\).*\(64, 64, 3, 3\)"):
        import_ssagan(bad)
    missing = {k: v for k, v in netG.items() if k != "block2.affine2.fc_beta.linear2.bias"}
    with pytest.raises(ModelLoadError, match=r"missing 1 tensors: block2\.affine2\.fc_beta\.linear2\.bias"):
        import_ssagan(missing)
    extra = dict(netG, **{"block1.c_sc.weight": torch.zeros(64, 64, 1, 1)})
    with pytest.raises(ModelLoadError, match=r"unexpected 1 tensors: block1\.c_sc\.weight"):
        import_ssagan(extra)
    d_extra = dict(ssagan_fx["netD"], **{"COND_DNET.joint_conv.0.bias": torch.zeros(16)})
    with pytest.raises(ModelLoadError, match=r"<netD state dict>.*unexpected 1 tensors: COND_DNET\.joint_conv\.0\.bias"):
        import_ssagan(netG, d_extra)
    with pytest.raises(ModelLoadError, match=r"fc\.weight"):
        import_ssagan({k: v for k, v in netG.items() if not k.startswith("fc.")})
    few_blocks = {k: v for k, v in netG.items() if not k.startswith(("block5.", "block6."))}
    few_blocks = {k: v for k, v in few_blocks.items() if not k.startswith("block4.")}
    few_blocks.update({k.replace("block3.", "block7."): v for k, v in netG.items() if k.startswith("block3.")})
    with pytest.raises(ModelLoadError, match=r"numbered \[0, 1, 2, 3, 7\]"):
        import_ssagan(few_blocks)


def test_ssagan_generator_and_discriminator_must_match(ssagan_fx):
    D128 = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=8, image_size=128))
    with pytest.raises(ModelLoadError, match=r"image size 256 .* 128"):
        import_ssagan(ssagan_fx["netG"], D128.state_dict())


def test_ssagan_not_a_torch_file(tmp_path: Path):
    path = tmp_path / "netG_100.pth"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(ModelLoadError, match=r"netG_100\.pth.*not a readable torch checkpoint"):
        import_ssagan(path)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        import_ssagan(tmp_path / "absent.pth")


def test_dfgan_strict_errors(tmp_path: Path, dfgan_fx):
    ckpt = _state_epoch(dfgan_fx)
    ckpt["model"]["netG"]["module.GBlocks.2.c2.weight"] = torch.zeros(64, 64, 3, 2)
    path = _save(tmp_path / "state_epoch_5.pth", ckpt)
    with pytest.raises(ModelLoadError, match=r"state_epoch_5\.pth\['model'\]\['netG'\].*GBlocks\.2\.c2\.weight"
                                             r".*\(64, 64, 3, 2\).*\(64, 64, 3, 3\)"):
        import_dfgan(path)
    ckpt = _state_epoch(dfgan_fx, prefix=False)
    del ckpt["model"]["netD"]["DBlocks.1.conv_s.bias"]
    with pytest.raises(ModelLoadError, match=r"\['netD'\].*missing 1 tensors: DBlocks\.1\.conv_s\.bias"):
        import_dfgan(ckpt)
    ckpt = _state_epoch(dfgan_fx, prefix=False)
    ckpt["model"]["netC"]["joint_conv.1.weight"] = torch.zeros(1)
    with pytest.raises(ModelLoadError, match=r"\['netC'\].*unexpected 1 tensors: joint_conv\.1\.weight"):
        import_dfgan(ckpt)
    ckpt = _state_epoch(dfgan_fx, prefix=False)
    del ckpt["model"]["netC"]
    with pytest.raises(ModelLoadError, match=r"has netD but no netC"):
        import_dfgan(ckpt)


def test_dfgan_file_without_model(tmp_path: Path, dfgan_fx):
    path = _save(tmp_path / "state_epoch_7.pth", {"netG_ema": _prefixed(dfgan_fx["netC"]),
                                                  "optimizers": {"optimizer_G": _adam_state()}, "epoch": 7})
    with pytest.raises(ModelLoadError, match=r"state_epoch_7\.pth.*no 'model'.*epoch, netG_ema, optimizers"):
        import_dfgan(path)
    path = _save(tmp_path / "state_epoch_8.pth", {"model": {"generator": {}}, "epoch": 8})
    with pytest.raises(ModelLoadError, match=r"state_epoch_8\.pth.*no 'netG' \(it has: generator\)"):
        import_dfgan(path)


def test_dfgan_unreadable_files(tmp_path: Path, dfgan_fx):
    text = tmp_path / "state_epoch_9.pth"
    text.write_text("hello, I am a text file\n")
    with pytest.raises(ModelLoadError, match=r"state_epoch_9\.pth: not a readable torch checkpoint"):
        import_dfgan(text)
    unsafe = _save(tmp_path / "state_epoch_10.pth",
                   {"model": {"netG": dfgan_fx["netC"]}, "args": argparse.Namespace(lr=1e-4)})
    with pytest.raises(ModelLoadError, match=r"state_epoch_10\.pth: holds non-tensor Python objects "
                                             r"\(argparse\.Namespace\).*refused for safety"):
        import_dfgan(unsafe)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        import_dfgan(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------------------------ convert_gan


def test_convert_gan_ssagan_end_to_end(tmp_path: Path, ssagan_fx, text_fx):
    fx = ssagan_fx
    g_path = _save(tmp_path / "netG_550.pth", _prefixed(fx["netG"]))
    d_path = _save(tmp_path / "netD_550.pth", _prefixed(fx["netD"]))
    te_path = _save(tmp_path / "text_encoder200.pth", text_fx["text_encoder"])
    captions = _write_captions(tmp_path / "captions.pickle", 40)
    out = convert_gan("ssagan", netG=g_path, netD=d_path, text_encoder=te_path, captions=captions,
                      out_dir=tmp_path / "model", words_num=16)
    assert out == tmp_path / "model"
    md = read_model_dir(out)
    assert md.family == "ssagan"
    assert set(md.components) == {"generator", "discriminator", "text_encoder"}
    assert len(md.vocab) == 40 and md.vocab == Vocabulary([END_TOKEN] + [f"w{i}" for i in range(1, 40)])
    assert md.meta["words_num"] == 16
    assert md.meta["source"] == {"netG": str(g_path), "netD": str(d_path), "text_encoder": str(te_path),
                                 "captions": str(captions)}
    G = md.components["generator"].eval()
    with torch.no_grad():
        image, _ = G(fx["noise"], fx["sent_emb"])
    assert max_abs_err(image, fx["image"]) < TOL
    _same_weights(md.components["discriminator"], fx["netD"])
    _same_weights(md.components["text_encoder"], text_fx["text_encoder"])


def test_convert_gan_dfgan(tmp_path: Path, dfgan_fx, text_fx):
    path = _save(tmp_path / "state_epoch_3.pth", _state_epoch(dfgan_fx))
    captions = _write_captions(tmp_path / "captions_DAMSM.pickle", 40)
    out = convert_gan("dfgan", state_epoch=path, text_encoder=text_fx["text_encoder"], captions=captions,
                      out_dir=tmp_path / "model")
    md = read_model_dir(out)
    assert md.family == "dfgan" and md.meta["words_num"] == 18
    assert md.meta["source"]["state_epoch"] == str(path)
    _same_weights(md.components["generator"], dfgan_fx["netG"])
    _same_weights(md.components["discriminator"].C, dfgan_fx["netC"])


def test_convert_gan_refusals_write_nothing(tmp_path: Path, ssagan_fx, text_fx):
    te = text_fx["text_encoder"]
    out = tmp_path / "model"
    captions41 = _write_captions(tmp_path / "captions41.pickle", 41)
    with pytest.raises(ValueError, match=r"41 words.*embeds 40"):
        convert_gan("ssagan", netG=ssagan_fx["netG"], text_encoder=te, captions=captions41, out_dir=out)
    assert not out.exists()
    with pytest.raises(ValueError, match="vocabulary is required"):
        convert_gan("ssagan", netG=ssagan_fx["netG"], text_encoder=te, out_dir=out)
    assert not out.exists()
    torch.manual_seed(0)
    small = SSAGANGenerator(SSAGANGeneratorConfig(ngf=2, cond_dim=128, image_size=64, mask_hidden=4))
    captions40 = _write_captions(tmp_path / "captions40.pickle", 40)
    with pytest.raises(ValueError, match=r"128-d sentence embeddings.*produces 256-d"):
        convert_gan("ssagan", netG=small.state_dict(), text_encoder=te, captions=captions40, out_dir=out)
    assert not out.exists()
    with pytest.raises(ValueError, match="state_epoch"):
        convert_gan("dfgan", netG=ssagan_fx["netG"], text_encoder=te, captions=captions40, out_dir=out)
    assert not out.exists()
