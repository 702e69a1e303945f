"""Speed of one full SSA-GAN training iteration on this machine.

One iteration is what the trainer runs per batch with the SSA-GAN objective: the generator's forward, the
discriminator's hinge step (real, fake, mismatched), the matching-aware gradient penalty as a second
discriminator step, and the generator step with the DAMSM loss of the generated images (the DAMSM image encoder:
the light CNN at 64 px as the SynthBirds preset uses it, Inception-v3 at 256 px as the official code does).
For 64 and 256 px (ngf = ndf = 32, batch 8) it prints seconds per image, the model FLOPs of the iteration
(torch.utils.flop_counter: forward, backward and the penalty's double backward; a multiply-add is 2 FLOPs), the
achieved GFLOP/s, this machine's fp32 matrix-multiply rate measured in the same run, and their ratio; in fp32
and with bf16 autocast + channels_last.

    python benchmarks/train_step.py [--sizes 64,256] [--batch 8] [--repeats 3] [--modes fp32,bf16]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from inference import bf16_mode_wanted, matmul_gflops
from torch.utils.flop_counter import FlopCounterMode

from t2igan.models.damsm import ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig
from t2igan.models.ssagan import (
    SSAGANDiscriminator,
    SSAGANDiscriminatorConfig,
    SSAGANGenerator,
    SSAGANGeneratorConfig,
)
from t2igan.objectives import Networks, SSAGANObjective
from t2igan.training.trainer import StepRunner


class _NoModuleTracking:
    """FlopCounterMode's module tracker breaks autograd.grad on leaf inputs (the penalty); count globally only."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class GlobalFlopCounter(FlopCounterMode):
    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _NoModuleTracking()


def build(size: int, ngf: int, channels_last: bool) -> Networks:
    torch.manual_seed(0)
    g = SSAGANGenerator(SSAGANGeneratorConfig(ngf=ngf, image_size=size))
    with torch.no_grad():  # the zero-initialised affine layers would make the work trivial in places
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    d = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=ngf, image_size=size))
    te = TextEncoder(TextEncoderConfig(vocab_size=5450))
    if size == 64:
        ie = ImageEncoder(ImageEncoderConfig.light(input_size=64, width=32))
    else:
        ie = ImageEncoder(ImageEncoderConfig(backbone="inception_v3", input_size=299))
    te.requires_grad_(False).eval()
    ie.requires_grad_(False).eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return Networks(g.to(memory_format=fmt), d.to(memory_format=fmt), te, ie)


def batch_of(b: int, size: int, channels_last: bool) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(8, 19, (b,), generator=g)
    caps = torch.randint(1, 5450, (b, int(lengths.max())), generator=g)
    images = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    batch = {"images": images, "captions": caps, "lengths": lengths, "class_ids": torch.arange(b)}
    return batch, torch.randn(b, 100, generator=g)


def measure(size: int, mode: str, b: int, ngf: int, repeats: int) -> dict:
    bf16 = mode == "bf16"
    nets = build(size, ngf, channels_last=bf16)
    runner = StepRunner(SSAGANObjective(), nets, device=torch.device("cpu"), amp="bf16" if bf16 else "off")
    batch, noise = batch_of(b, size, channels_last=bf16)
    runner.step(batch, noise)  # warm-up
    with GlobalFlopCounter() as fc:
        runner.step(batch, noise)
    flops = fc.get_total_flops()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        stats, finite = runner.step(batch, noise)
        times.append(time.perf_counter() - t)
    assert finite, "a loss was not finite"
    best = min(times)
    return {"size": size, "mode": mode, "batch": b, "ngf": ngf, "s_per_image": best / b,
            "s_per_image_mean": sum(times) / len(times) / b, "gflop_per_image": flops / b / 1e9,
            "gflops": flops / best / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--modes", default="fp32,bf16", help="fp32 and/or bf16 (bf16 autocast + channels_last)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--force-bf16", action="store_true", help="time bf16 also on a CPU without native bf16")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if "bf16" in modes and not bf16_mode_wanted(args.force_bf16):
        modes.remove("bf16")
    mm = matmul_gflops()
    print(f"fp32 matmul (2048x2048): {mm:.0f} GFLOP/s, threads={torch.get_num_threads()}")
    print(f"{'size':>5} {'mode':>5} {'batch':>5} {'s/img':>8} {'(mean)':>8} {'GFLOP/img':>10} {'GFLOP/s':>8} "
          f"{'ratio':>6}")
    rows = []
    for size in [int(x) for x in args.sizes.split(",")]:
        fp32 = None
        for mode in modes:
            r = measure(size, mode, args.batch, args.ngf, args.repeats)
            r["matmul_gflops"] = mm
            r["ratio"] = r["gflops"] / mm
            if mode == "fp32":
                fp32 = r["s_per_image"]
            elif fp32 is not None:
                r["speedup_vs_fp32"] = fp32 / r["s_per_image"]
            rows.append(r)
            extra = f"  {r['speedup_vs_fp32']:.2f}x vs fp32" if "speedup_vs_fp32" in r else ""
            print(f"{size:>5} {mode:>5} {args.batch:>5} {r['s_per_image']:>8.3f} {r['s_per_image_mean']:>8.3f} "
                  f"{r['gflop_per_image']:>10.1f} {r['gflops']:>8.1f} {r['ratio']:>6.2f}{extra}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    if not math.isfinite(mm):
        raise SystemExit("matmul measurement failed")


if __name__ == "__main__":
    main()
