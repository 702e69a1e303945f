"""GeneratorRunner: precision modes, torch.compile (and its fallback), channels_last all the way through."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

from conftest import randomize_module, write_tiny_model_dir
from t2igan.models.base import TextCondition
from t2igan.models.dfgan import DFGANGenerator, DFGANGeneratorConfig
from t2igan.models.inference import GeneratorRunner, check_precision
from t2igan.models.layers import AffineMLP, grouped_affine_mlps
from t2igan.models.ssagan import SSAGANGenerator, SSAGANGeneratorConfig
from t2igan.pipeline import T2IPipeline

WORDS = ["<end>", "a", "small", "bird", "with", "red", "blue", "crown", "wings", "large"]


def tiny(family: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if family == "ssagan":
        g = SSAGANGenerator(SSAGANGeneratorConfig(ngf=4, nz=8, cond_dim=32, image_size=64, mask_hidden=8))
    else:
        g = DFGANGenerator(DFGANGeneratorConfig(ngf=4, nz=8, cond_dim=32, image_size=64))
    return randomize_module(g, seed, residual_gamma=0.5).eval()


def inputs(batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, TextCondition]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, generator=gen), TextCondition(torch.randn(batch, 32, generator=gen))


def plain(g: nn.Module, noise, cond) -> tuple[torch.Tensor, list]:
    with torch.no_grad():
        img, maps = g.synthesize(noise, cond)
    return img, maps or []


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) / 2).square().mean()))


def test_precision_is_checked():
    assert check_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="'bf17'"):
        check_precision("bf17", torch.device("cpu"))
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        GeneratorRunner(tiny("dfgan"), "cpu", precision="fp16")


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_every_convolution_sees_channels_last_input(family, one_thread):
    """The trunk starts in the weights' format: no conv converts its input (it did, block by block, before)."""
    g = tiny(family).to(memory_format=torch.channels_last)
    seen: list[tuple[str, bool]] = []

    def check(name):
        def hook(_module, args):
            x = args[0]
            if x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:
                seen.append((name, x.is_contiguous(memory_format=torch.channels_last)))
        return hook

    for name, m in g.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(check(name))
    plain(g, *inputs())
    assert len(seen) > 10
    assert [name for name, ok in seen if not ok] == []


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_fp32_runner_equals_the_plain_module_and_bf16_is_close(family, one_thread):
    g = tiny(family)
    noise, cond = inputs()
    ref_img, ref_maps = plain(g, noise, cond)
    img, maps = GeneratorRunner(tiny(family), "cpu")(noise, cond)
    assert img.dtype == torch.float32 and not img.requires_grad
    assert (img - ref_img).abs().max() <= 1e-5
    assert len(maps or []) == len(ref_maps) and all((a - b).abs().max() <= 1e-5 for a, b in zip(maps or [], ref_maps))
    img16, maps16 = GeneratorRunner(tiny(family), "cpu", precision="bf16")(noise, cond)
    assert img16.dtype == torch.float32
    assert not torch.equal(img16, img)  # bf16 really ran
    assert psnr(img16, img) >= 35
    if family == "ssagan":
        assert all(m.dtype == torch.float32 for m in maps16)


def test_grouped_affine_mlps_equal_each_module():
    torch.manual_seed(0)
    shapes = [(16, 8), (16, 4), (16, 8), (12, 12), (16, 4), (16, 8)]  # (hidden, out), shapes interleaved
    mlps = [AffineMLP(10, h, o, last_bias=0.5) for h, o in shapes]
    for m in mlps:
        nn.init.normal_(m.linear2.weight)
    x = torch.randn(3, 10)
    got = grouped_affine_mlps(mlps, x)
    assert [tuple(t.shape) for t in got] == [(3, o) for _, o in shapes]
    for m, t in zip(mlps, got):
        assert (t - m(x)).abs().max() <= 1e-5
    assert grouped_affine_mlps([], x) == []
    with pytest.raises(ValueError, match=r"inputs of size \[10\], got x of shape \(3, 7\)"):
        grouped_affine_mlps(mlps, torch.randn(3, 7))


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_fused_synthesis_equals_plain_without_calling_the_mlps(family, one_thread):
    """synthesize_fused (what the compiled runner compiles) gives synthesize's image and masks, and really
    takes its modulation from the grouped products: no conditioning MLP module is called."""
    g = tiny(family)
    noise, cond = inputs()
    calls = []
    for m in g.modules():
        if isinstance(m, AffineMLP):
            m.register_forward_hook(lambda *_: calls.append(1))
    ref_img, ref_maps = plain(g, noise, cond)
    assert len(calls) == (20 if family == "ssagan" else 32)  # 5 blocks x 4; 4 blocks x 8
    calls.clear()
    with torch.no_grad():
        img, maps = g.synthesize_fused(noise, cond)
    assert calls == []
    assert (img - ref_img).abs().max() <= 1e-5
    assert len(maps or []) == len(ref_maps) and all((a - b).abs().max() <= 1e-5 for a, b in zip(maps or [], ref_maps))


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_compiled_runner_equals_eager_or_says_why_not(family, one_thread):
    """torch.compile with frozen weights gives the plain module's image and masks to 1e-4; on a machine where
    it cannot compile, it warns and runs eagerly, with the same numbers."""
    g = tiny(family)
    noise, cond = inputs()
    ref_img, ref_maps = plain(g, noise, cond)
    runner = GeneratorRunner(tiny(family), "cpu", compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img, maps = runner(noise, cond)
        img2, _ = runner(noise, cond)
    fell_back = [w for w in caught if "torch.compile could not build" in str(w.message)]
    assert runner.compiled == (not fell_back)
    assert (img - ref_img).abs().max() <= 1e-4 and torch.equal(img, img2)
    assert len(maps or []) == len(ref_maps) == (5 if family == "ssagan" else 0)
    assert all((a - b).abs().max() <= 1e-4 for a, b in zip(maps or [], ref_maps))
    if runner.compiled:  # frozen: the weights are constants of the compiled graph, a later edit does not reach it
        with torch.no_grad():
            runner.generator.fc.weight.add_(1.0)
        assert torch.equal(runner(noise, cond)[0], img)


def test_a_failed_compile_warns_and_runs_eagerly(monkeypatch, one_thread):
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(fn, **kwargs):
        def call(*args):
            # what a machine without a C++ compiler raises at the first call (the constructor differs by release)
            err = BackendCompilerFailed.__new__(BackendCompilerFailed)
            Exception.__init__(err, "backend='inductor' raised:\nInvalidCxxCompiler: No working C++ compiler found")
            raise err
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    runner = GeneratorRunner(tiny("dfgan"), "cpu", compile=True)
    noise, cond = inputs()
    with pytest.warns(RuntimeWarning, match="torch.compile could not build the generator"):
        img, _ = runner(noise, cond)
    assert not runner.compiled
    assert (img - plain(tiny("dfgan"), noise, cond)[0]).abs().max() <= 1e-5


def test_errors_of_the_model_itself_are_not_swallowed(one_thread):
    runner = GeneratorRunner(tiny("ssagan"), "cpu")
    with pytest.raises(ValueError, match="noise must be"):
        runner(torch.randn(2, 5), TextCondition(torch.randn(2, 32)))


def test_pipeline_and_cli_take_precision(tmp_path, one_thread):
    from t2igan.cli import main

    model = write_tiny_model_dir(tmp_path / "model", "ssagan", WORDS)
    fp32 = T2IPipeline.from_pretrained(model)(["a small bird with red"], seed=2)
    bf16 = T2IPipeline.from_pretrained(model, precision="bf16")(["a small bird with red"], seed=2)
    assert not torch.equal(fp32.tensors, bf16.tensors) and psnr(bf16.tensors, fp32.tensors) >= 35
    out = tmp_path / "s"
    assert main(["sample", "--model", str(model), "--prompt", "a small bird", "--precision", "bf16",
                 "--out", str(out)]) == 0
    assert (out / "p000_00.png").is_file()
    assert json.loads((out / "prompts.jsonl").read_text().splitlines()[0])["prompt"] == "a small bird"
    assert main(["sample", "--model", str(model), "--prompt", "a bird", "--precision", "fp16",
                 "--out", str(tmp_path / "t")]) == 2


@pytest.mark.parametrize("family", ["ssagan", "dfgan"])
def test_cpu_batches_run_in_chunks_with_the_same_numbers(family, one_thread):
    noise, cond = inputs(batch=5)
    whole = GeneratorRunner(tiny(family), "cpu", chunk_bytes=None)
    chunked = GeneratorRunner(tiny(family), "cpu", chunk_bytes=1)  # smaller than one image: one at a time
    assert whole.chunk is None and chunked.chunk == 1
    a, b = whole(noise, cond), chunked(noise, cond)
    assert a[0].shape == b[0].shape == (5, 3, 64, 64)
    assert (a[0] - b[0]).abs().max() <= 1e-5
    assert len(a[1] or []) == len(b[1] or []) and all((x - y).abs().max() <= 1e-5 for x, y in zip(a[1] or [], b[1] or []))


def test_chunk_size_follows_the_feature_maps():
    """16 MiB of feature maps per call: one 256-px ngf-32 image (64 channels at 256x256), four at 64 px."""
    big = SSAGANGenerator(SSAGANGeneratorConfig(ngf=32, image_size=256))
    assert big.feature_bytes_per_image() == 4 * 64 * 256 * 256
    assert GeneratorRunner(big, "cpu").chunk == 1
    small = SSAGANGenerator(SSAGANGeneratorConfig(ngf=32, image_size=64))
    assert small.feature_bytes_per_image() == 4 * 256 * 64 * 64
    assert GeneratorRunner(small, "cpu").chunk == 4
    assert GeneratorRunner(small, "cpu", chunk_bytes=None).chunk is None
