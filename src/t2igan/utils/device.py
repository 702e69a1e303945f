"""Device selection shared by training, sampling and the CLI, and whether bf16 autocast pays off on a device."""

from __future__ import annotations

import functools
import logging

import torch

__all__ = ["resolve_device", "native_bf16", "resolve_amp", "bf16_note"]

log = logging.getLogger("t2igan")


def resolve_device(name: str | torch.device) -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; a CUDA device without CUDA is a clear error."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r} requested but CUDA is not available")
    return dev


@functools.cache
def _cpu_bf16() -> bool:
    # oneDNN runs bf16 convolutions and matrix products in hardware (AVX-512 BF16, AMX) or fast emulation (AVX-512
    # core); on AVX2-only CPUs it falls back to reference kernels 30-100x slower than fp32 (measured: a 1024^2
    # matmul at 0.6 GFLOP/s against 62 in fp32 on an AVX2 EPYC)
    probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:  # pragma: no cover - builds without oneDNN
            return False
    return torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")  # pragma: no cover


def native_bf16(device: str | torch.device) -> bool:
    """Whether bf16 autocast runs at least at fp32 speed on ``device`` (CUDA with bf16, AVX-512 CPUs)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        return _cpu_bf16()
    return False


def bf16_note(device: str | torch.device) -> str:
    """Why bf16 is slow on ``device``, for messages."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return (f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16, so bf16 autocast runs "
                "30-100x slower than fp32")
    return f"{dev} has no bf16 support"


def resolve_amp(amp: str | bool, device: str | torch.device, what: str = "train.amp") -> str:
    """The autocast mode to run: ``'auto'`` (or ``True``) is bf16 where the device runs it natively, else off;
    an explicit ``'bf16'`` is kept, with a warning where it is slow; ``False`` is off."""
    if amp is False or amp == "off":
        return "off"
    if amp is True or amp == "auto":
        if native_bf16(device):
            return "bf16"
        log.info("%s=%s: fp32, since %s", what, "auto" if amp == "auto" else "true", bf16_note(device))
        return "off"
    if amp == "bf16" and not native_bf16(device):
        log.warning("%s=bf16: %s; set %s=auto (or off) to train in fp32", what, bf16_note(device), what)
    return str(amp)
