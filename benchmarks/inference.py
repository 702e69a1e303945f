"""Generator inference speed of SSA-GAN and DF-GAN on this machine.

For each family, ngf in {32, 64}, image size in {256, 64} and batch in {1, 8}: model GFLOP per image (counted
by torch.utils.flop_counter; a multiply-add counts as 2 FLOPs); seconds per image of the plain module (NCHW,
eager, fp32: the straightforward implementation) and of ``GeneratorRunner``'s fp32 mode (what
``T2IPipeline(..., compile=True)`` runs: channels_last, torch.compile with frozen weights), with the achieved
GFLOP/s, this machine's fp32 matrix-multiply rate measured in pairs with the row's timings and their ratio, and the largest
difference from the plain module over the image and every mask; the compiled mode's first call (compilation)
is reported apart. Then the bf16 mode: its time, speed-up over the fp32 mode and PSNR against it, on these
random-weight models and on the shipped trained model.

The matrix-multiply rate of this 2-core machine was seen to vary from 73 to 182 GFLOP/s between measurements minutes apart
(other load on the host), so the two are measured in pairs: each of ``--repeats`` rounds times the matrix multiply
(best of 3) and right after it the generator (its best call over at least ``--min-seconds``), and the row's ratio
is the median of the rounds' ratios; its seconds per image are the best round's. The summary also gives each
row's best rate against the *highest* matrix-multiply rate seen in the whole run (the conservative figure).

    python benchmarks/inference.py [--repeats 3] [--min-seconds 0.5] [--no-compile] [--no-bf16] [--only ssagan] [--sizes 256,64]
                                   [--ngf 32,64] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from t2igan.models.base import TextCondition
from t2igan.models.dfgan import DFGANGenerator, DFGANGeneratorConfig
from t2igan.models.inference import GeneratorRunner
from t2igan.models.ssagan import SSAGANGenerator, SSAGANGeneratorConfig
from t2igan.utils.device import bf16_note, native_bf16


def bf16_mode_wanted(force: bool) -> bool:
    """Whether to time a bf16 mode: on a CPU without native bf16 only with ``force`` (it says why it skips)."""
    if force or native_bf16("cpu"):
        return True
    print(f"bf16 mode skipped: {bf16_note('cpu')} (--force-bf16 times it anyway)", flush=True)
    return False


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


def straightforward(g: torch.nn.Module, noise: torch.Tensor, sent: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The plain module: NCHW, eager, fp32 (what the fast modes must equal)."""
    with torch.no_grad():
        img, maps = g.synthesize(noise, TextCondition(sent))
    return img.float(), [m.float() for m in maps or []]


def timed(fn, args: tuple, repeats: int) -> tuple[float, float, tuple]:
    """(first call s, best of ``repeats`` later calls s, output) of ``fn(*args)``."""
    t = time.perf_counter()
    out = fn(*args)
    first = time.perf_counter() - t
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return first, best, out


def paired(fn, args: tuple, repeats: int, min_seconds: float) -> tuple[float, list[tuple[float, float]], tuple]:
    """(first call s, [(matmul GFLOP/s, best call s)] per round, output) of ``fn(*args)``: each round measures
    the matrix-multiply rate and then calls ``fn`` until ``min_seconds`` have passed (at least once)."""
    t = time.perf_counter()
    out = fn(*args)
    first = time.perf_counter() - t
    rounds = []
    for _ in range(repeats):
        mm = matmul_gflops(repeats=3)
        best, spent = math.inf, 0.0
        while spent < min_seconds or best == math.inf:
            t = time.perf_counter()
            out = fn(*args)
            dt = time.perf_counter() - t
            best, spent = min(best, dt), spent + dt
        rounds.append((mm, best))
    return first, rounds, out


def summarise(rounds: list[tuple[float, float]], gflop: float) -> tuple[float, float, float]:
    """(best seconds, median matmul GFLOP/s, median of the rounds' ratios) for ``gflop`` per call."""
    return (min(b for _, b in rounds), statistics.median(m for m, _ in rounds),
            statistics.median(gflop / b / m for m, b in rounds))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) / 2).square().mean())  # images in [-1, 1] -> range 1
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def max_diff(a: tuple, b: tuple) -> float:
    """Largest absolute difference over the image and every mask."""
    pairs = [(a[0], b[0])] + list(zip(a[1] or [], b[1] or []))
    return max(float((x - y).abs().max()) for x, y in pairs)


def shipped_bf16_psnr(repeats: int) -> dict:
    """bf16 against fp32 (both eager) on the shipped trained model: random weights give low-contrast images on
    which bf16's rounding shows less, so this is the PSNR users see."""
    from t2igan.pipeline import T2IPipeline

    prompts = [f"a {s} bird with a {c} crown and {w} wings" for s in ("small", "large")
               for c in ("red", "blue", "black", "yellow") for w in ("blue", "brown")]
    fp32 = T2IPipeline.from_pretrained("synthbirds")
    bf16 = T2IPipeline.from_pretrained("synthbirds", precision="bf16")
    _, t32, a = timed(fp32, (prompts,), repeats)
    _, t16, b = timed(bf16, (prompts,), repeats)
    return {"model": "synthbirds (shipped SSA-GAN, ngf 16, 64 px)", "images": len(prompts),
            "bf16_psnr_db": round(psnr(b.tensors, a.tensors), 1), "bf16_speedup_eager": round(t32 / t16, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of (matmul, generator) per row")
    ap.add_argument("--min-seconds", type=float, default=0.5,
                    help="each round calls the generator until this much time has passed (at least once)")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 mode")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="time the eager channels_last generator instead of the torch.compile'd one")
    ap.add_argument("--only", choices=["ssagan", "dfgan"], default=None)
    ap.add_argument("--sizes", default="256,64")
    ap.add_argument("--ngf", default="32,64")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--no-shipped", dest="shipped", action="store_false",
                    help="skip the bf16 PSNR of the shipped trained model")
    ap.add_argument("--force-bf16", action="store_true", help="time bf16 also on a CPU without native bf16")
    args = ap.parse_args()
    args.bf16 = args.bf16 and bf16_mode_wanted(args.force_bf16)
    mm = matmul_gflops()
    print(f"fp32 matmul (2048x2048): {mm:.0f} GFLOP/s, threads={torch.get_num_threads()}, "
          f"mode: GeneratorRunner(channels_last{', torch.compile with freezing' if args.compile else ', eager'})",
          flush=True)
    rows: list[dict] = []
    all_rates: list[float] = []  # every matmul measurement of the run
    for family in [args.only] if args.only else ["ssagan", "dfgan"]:
        for ngf in map(int, args.ngf.split(",")):
            for size in map(int, args.sizes.split(",")):
                g = build(family, ngf, size)
                for batch in map(int, args.batches.split(",")):
                    gen = torch.Generator().manual_seed(1)
                    noise = torch.randn(batch, 100, generator=gen)
                    sent = torch.randn(batch, 256, generator=gen)
                    with FlopCounterMode(display=False) as fc:
                        ref = straightforward(g, noise, sent)
                    gflop = fc.get_total_flops() / 1e9 / batch
                    _, plain_rounds, ref = paired(straightforward, (g, noise, sent), args.repeats,
                                                  args.min_seconds)
                    t_plain, _, plain_ratio = summarise(plain_rounds, gflop * batch)
                    torch._dynamo.reset()  # a fresh compile per row (Dynamo caches a bounded number per function)
                    fast = GeneratorRunner(copy.deepcopy(g), "cpu", compile=args.compile)
                    c32, rounds, out32 = paired(fast, (noise, TextCondition(sent)), args.repeats, args.min_seconds)
                    t32, mm_row, ratio = summarise(rounds, gflop * batch)
                    diff = max_diff(out32, ref)
                    row = {"family": family, "ngf": ngf, "size": size, "batch": batch,
                           "gflop_per_image": round(gflop, 2),
                           "plain_fp32_s_per_image": round(t_plain / batch, 4),
                           "fp32_s_per_image": round(t32 / batch, 4),
                           "fp32_gflops": round(gflop * batch / t32, 1),
                           "matmul_gflops": round(mm_row, 1),
                           "ratio_to_matmul": round(ratio, 3),
                           "ratio_per_round": [round(gflop * batch / b / m, 3) for m, b in rounds],
                           "plain_ratio_to_matmul": round(plain_ratio, 3),
                           "max_abs_diff_vs_plain": float(f"{diff:.2e}"), "equal_to_1e-4": diff <= 1e-4}
                    if args.compile:
                        row["fp32_first_call_s"] = round(c32, 1)
                    if args.bf16:
                        fast16 = GeneratorRunner(copy.deepcopy(g), "cpu", precision="bf16", compile=args.compile)
                        c16, t16, out16 = timed(fast16, (noise, TextCondition(sent)), args.repeats)
                        row.update({"bf16_s_per_image": round(t16 / batch, 4),
                                    "bf16_speedup": round(t32 / t16, 2),
                                    "bf16_psnr_db": round(psnr(out16[0], out32[0]), 1)})
                    rows.append(row)
                    all_rates.extend(m for m, _ in rounds + plain_rounds)
                    print(json.dumps(row), flush=True)
    rates = [mm, *all_rates]
    top = max(rates)
    summary = {"matmul_fp32_gflops_start": round(mm, 1), "matmul_fp32_gflops_max": round(top, 1),
               "matmul_fp32_gflops_min": round(min(rates), 1),
               "rows": len(rows), "compile": args.compile,
               "ratio_to_max_matmul": {f"{r['family']} ngf{r['ngf']} {r['size']}px b{r['batch']}":
                                       round(r["fp32_gflops"] / top, 3) for r in rows}}
    if args.shipped and args.bf16:
        summary["shipped"] = shipped_bf16_psnr(args.repeats)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
