"""Distributed helpers over ``torch.distributed`` that are no-ops in a single process.

Processes are started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``); :func:`init_from_env` joins the group (NCCL on CUDA, gloo on CPU). The same code runs in one
process without any process group.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "local_rank", "is_main", "barrier",
           "broadcast_object", "all_gather_uneven", "shard", "cleanup"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str | torch.device = "cpu", backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; False when running as one process."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dev = torch.device(device)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_uneven(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (first dimensions may differ) in rank order, on every rank."""
    if not is_distributed():
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes_i = [int(s) for s in sizes]
    padded = torch.zeros((max(sizes_i), *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in sizes_i]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes_i)])


def shard(n: int, r: int | None = None, w: int | None = None) -> range:
    """Global indices ``0..n-1`` that rank ``r`` of ``w`` handles: ``r, r + w, ...``."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    return range(r, n, w)
