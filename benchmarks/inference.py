"""Generator inference speed of SSA-GAN and DF-GAN on this machine.

For each family, ngf in {32, 64}, image size in {256, 64} and batch in {1, 8}: seconds per image, model GFLOP
per image (counted by torch.utils.flop_counter; a multiply-add counts as 2 FLOPs), the achieved GFLOP/s, this
machine's fp32 matrix-multiply rate measured in the same run, and their ratio. With --bf16 also the bf16
autocast time and its PSNR against fp32 on the same noise.

    python benchmarks/inference.py [--repeats 3] [--bf16] [--only ssagan] [--sizes 256,64] [--ngf 32,64]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from t2igan.models.dfgan import DFGANGenerator, DFGANGeneratorConfig
from t2igan.models.ssagan import SSAGANGenerator, SSAGANGeneratorConfig


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def build(family: str, ngf: int, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "ssagan":
        g = SSAGANGenerator(SSAGANGeneratorConfig(ngf=ngf, image_size=size))
    else:
        g = DFGANGenerator(DFGANGeneratorConfig(ngf=ngf, image_size=size))
    with torch.no_grad():  # the zero-initialised affine layers would make the work trivial in places
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return g.eval()


def run(g: torch.nn.Module, noise: torch.Tensor, sent: torch.Tensor, bf16: bool) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = g(noise, sent)
    return (out[0] if isinstance(out, tuple) else out).float()


def timed(g, noise, sent, bf16: bool, repeats: int) -> tuple[float, torch.Tensor]:
    out = run(g, noise, sent, bf16)  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = run(g, noise, sent, bf16)
        best = min(best, time.perf_counter() - t)
    return best, out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) / 2).square().mean())  # images in [-1, 1] -> range 1
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast and report PSNR vs fp32")
    ap.add_argument("--only", choices=["ssagan", "dfgan"], default=None)
    ap.add_argument("--sizes", default="256,64")
    ap.add_argument("--ngf", default="32,64")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--channels-last", action="store_true", help="run the generator in channels_last memory format")
    args = ap.parse_args()
    mm = matmul_gflops()
    print(f"fp32 matmul (2048x2048): {mm:.0f} GFLOP/s, threads={torch.get_num_threads()}")
    rows = []
    for family in [args.only] if args.only else ["ssagan", "dfgan"]:
        for ngf in map(int, args.ngf.split(",")):
            for size in map(int, args.sizes.split(",")):
                g = build(family, ngf, size)
                if args.channels_last:
                    g = g.to(memory_format=torch.channels_last)
                for batch in map(int, args.batches.split(",")):
                    gen = torch.Generator().manual_seed(1)
                    noise = torch.randn(batch, 100, generator=gen)
                    sent = torch.randn(batch, 256, generator=gen)
                    with FlopCounterMode(display=False) as fc:
                        run(g, noise, sent, False)
                    gflop = fc.get_total_flops() / 1e9 / batch
                    t32, out32 = timed(g, noise, sent, False, args.repeats)
                    row = {"family": family, "ngf": ngf, "size": size, "batch": batch,
                           "channels_last": args.channels_last,
                           "gflop_per_image": round(gflop, 2), "fp32_s_per_image": round(t32 / batch, 4),
                           "fp32_gflops": round(gflop * batch / t32, 1),
                           "ratio_to_matmul": round(gflop * batch / t32 / mm, 3)}
                    if args.bf16:
                        t16, out16 = timed(g, noise, sent, True, args.repeats)
                        row.update({"bf16_s_per_image": round(t16 / batch, 4),
                                    "bf16_speedup": round(t32 / t16, 2), "bf16_psnr_db": round(psnr(out16, out32), 1)})
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(json.dumps({"matmul_fp32_gflops": round(mm, 1), "rows": len(rows)}))


if __name__ == "__main__":
    main()
