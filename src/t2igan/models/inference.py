"""Running a generator for inference: eval mode, channels_last, optional autocast and ``torch.compile``.

``GeneratorRunner(generator, device, precision="fp32", compile=False)(noise, cond)`` returns what
``generator.synthesize(noise, cond)`` returns, in float32, without gradients.

* ``precision``: ``fp32``; ``bf16`` (autocast; on CPUs with AVX512-BF16 or AMX and on CUDA); ``fp16`` (autocast,
  CUDA only).
* ``compile``: ``torch.compile`` with Inductor's *freezing* (weights become constants, so batch norm and the
  constant parts fold away and the convolution weights are pre-packed) and static shapes. The first call for each
  batch shape compiles (tens of seconds on a CPU; Inductor caches the result on disk for the next process), later
  calls are faster: ``benchmarks/inference.py`` measures both. The weights must not change after the first call.
  Without a working C++ compiler (CPU) or Triton (CUDA), the runner warns once and runs the generator eagerly.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from t2igan.models.base import GeneratorBase, TextCondition

__all__ = ["PRECISIONS", "GeneratorRunner", "check_precision"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device (got {device}); on a CPU use bf16")
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
                 compile: bool = False) -> None:
        self.device = torch.device(device)
        self.precision = check_precision(precision, self.device)
        # channels_last: the same numbers (to float rounding), faster convolutions (benchmarks/inference.py)
        self.generator = generator.to(self.device, memory_format=torch.channels_last).eval()
        self.compiled = bool(compile)
        self._fn = self.generator.synthesize
        if self.compiled:
            self._fn = torch.compile(self.generator.synthesize, dynamic=False, options={"freezing": True})

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=_DTYPES.get(self.precision, torch.float32),
                              enabled=self.precision != "fp32")

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, cond: TextCondition) -> tuple[torch.Tensor, Any]:
        with self._autocast():
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
