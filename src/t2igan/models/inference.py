"""Running a generator for inference: eval mode, channels_last, optional autocast and ``torch.compile``.

``GeneratorRunner(generator, device, precision="fp32", compile=False)(noise, cond)`` returns what
``generator.synthesize(noise, cond)`` returns, in float32, without gradients.

* ``precision``: ``fp32``; ``bf16`` (autocast; on CPUs with AVX512-BF16 or AMX and on CUDA); ``fp16`` (autocast,
  CUDA only).
* on a CPU a batch runs in chunks whose largest feature maps total at most ``chunk_bytes`` (16 MiB: one image
  at a time for 256-px SSA-GAN/DF-GAN at ngf 32, 4 at 64 px): measured here, 10-25 % faster per image than whole
  batches of 8 at 256 px. Eval-mode generators treat images independently, so the numbers do not change.
* ``compile``: ``torch.compile`` of the generator's :meth:`~t2igan.models.base.GeneratorBase.synthesize_fused`
  (SSA-GAN and DF-GAN evaluate all their conditioning MLPs in a few products) with Inductor's *freezing*
  (weights become constants, so batch norm and the constant parts fold away, the convolution weights are
  pre-packed and the MLP weights concatenated once) and static shapes; on a CPU also with Inductor's C++ wrapper
  (the compiled graph's kernels are called from C++ rather than Python). Measured on the 2-core AVX2 machine
  (the variants alternated in one process, DF-GAN ngf 32, 64 px, batch 1): median 16.0 ms before, 14.3 with the C++
  wrapper, 12.5 with the fused MLPs as well. The first call for each
  batch shape compiles (tens of seconds on a CPU; Inductor caches the result on disk for the next process), later
  calls are faster: ``benchmarks/inference.py`` measures both. The weights must not change after the first call.
  Without a working C++ compiler (CPU) or Triton (CUDA), the runner warns once and runs the generator eagerly.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from t2igan.models.base import GeneratorBase, TextCondition
from t2igan.utils.device import bf16_note, native_bf16

__all__ = ["PRECISIONS", "GeneratorRunner", "check_precision"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


CHUNK_BYTES = 16 << 20


def _rows(cond: TextCondition, start: int, stop: int) -> TextCondition:
    def cut(t):
        return None if t is None else t[start:stop]

    return TextCondition(cond.sent_emb[start:stop], cut(cond.words_emb), cut(cond.word_mask))


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device (got {device}); on a CPU use bf16")
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(f"precision bf16: {bf16_note(device)}; fp32 is the faster choice here", stacklevel=3)
    return precision


def _compile_errors() -> tuple[type[BaseException], ...]:
    """What a compile failure (no compiler, an unsupported op) raises at the first call."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from torch._dynamo.exc import BackendCompilerFailed

        errors.append(BackendCompilerFailed)
    except ImportError:  # pragma: no cover - every torch>=2.4 has it
        pass
    try:
        from torch._inductor.exc import InvalidCxxCompiler

        errors.append(InvalidCxxCompiler)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class GeneratorRunner:
    """Calls ``generator.synthesize`` for inference in the chosen precision, compiled or not."""

    def __init__(self, generator: GeneratorBase, device: str | torch.device = "cpu", *, precision: str = "fp32",
                 compile: bool = False, chunk_bytes: int | None = CHUNK_BYTES) -> None:
        self.device = torch.device(device)
        self.precision = check_precision(precision, self.device)
        # channels_last: the same numbers (to float rounding), faster convolutions (benchmarks/inference.py)
        self.generator = generator.to(self.device, memory_format=torch.channels_last).eval()
        per_image = generator.feature_bytes_per_image()
        self.chunk: int | None = None  # images per generator call (None: the whole batch)
        if self.device.type == "cpu" and chunk_bytes and per_image:
            self.chunk = 1 << max(0, (chunk_bytes // per_image).bit_length() - 1)  # a power of two: few shapes
        self.compiled = bool(compile)
        self._fn = self.generator.synthesize
        if self.compiled:
            # freezing comes from the config patch around each call (_frozen): torch.compile's options={"freezing":
            # True} was measured not to freeze (the graph kept reading the parameters), the patch does
            self._fn = torch.compile(self.generator.synthesize_fused, dynamic=False)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=_DTYPES.get(self.precision, torch.float32),
                              enabled=self.precision != "fp32")

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, cond: TextCondition) -> tuple[torch.Tensor, Any]:
        n, k = noise.shape[0], self.chunk or noise.shape[0]
        if n <= k:
            return self._call(noise, cond)
        parts = [self._call(noise[i:i + k], _rows(cond, i, i + k)) for i in range(0, n, k)]
        img = torch.cat([p[0] for p in parts])
        if parts[0][1] is None:
            return img, None
        return img, [torch.cat([p[1][b] for p in parts]) for b in range(len(parts[0][1]))]

    def _frozen(self):
        if not self.compiled:
            return contextlib.nullcontext()
        from torch._inductor import config as inductor_config

        return inductor_config.patch(freezing=True, cpp_wrapper=self.device.type == "cpu")

    def _call(self, noise: torch.Tensor, cond: TextCondition) -> tuple[torch.Tensor, Any]:
        with self._autocast(), self._frozen():
            try:
                img, maps = self._fn(noise, cond)
            except _compile_errors() as e:
                if not self.compiled:
                    raise
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                warnings.warn(f"torch.compile could not build the generator ({reason[:300]}); running it "
                              "without compiling", RuntimeWarning, stacklevel=2)
                self._fn, self.compiled = self.generator.synthesize, False
                img, maps = self._fn(noise, cond)
        maps = [m.float() for m in maps] if maps is not None else None
        return img.float(), maps
