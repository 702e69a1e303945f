"""Batching: padding to the longest caption, sorting for the LSTM and restoring the order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate_batch", "pad_captions", "batch_to", "sort_by_length", "make_loader", "EpochSampler"]


def collate_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into a batch.

    ``captions`` [B, T] (T = longest caption in the batch, 0-padded), ``lengths`` [B], ``class_ids`` [B],
    ``images`` [B, 3, H, W] when the items carry images, ``text_embeddings`` [B, D] when they carry precomputed
    embeddings, and ``keys``, ``indices``, ``caption_indices``.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.as_tensor([it["length"] for it in items], dtype=torch.long)
    t = max(int(lengths.max()), 1)
    batch: dict[str, Any] = {
        "captions": torch.stack([it["caption"][:t] for it in items]),
        "lengths": lengths,
        "class_ids": torch.as_tensor([it["class_id"] for it in items], dtype=torch.long),
        "keys": [it["key"] for it in items],
        "indices": torch.as_tensor([it["index"] for it in items], dtype=torch.long),
        "caption_indices": torch.as_tensor([it["caption_index"] for it in items], dtype=torch.long),
    }
    if "image" in items[0]:
        batch["images"] = torch.stack([it["image"] for it in items])
    if "text_embedding" in items[0]:
        batch["text_embeddings"] = torch.stack([it["text_embedding"] for it in items])
    return batch


def pad_captions(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-id lists -> ``captions`` [B, T] (T = the longest, 0-padded) and ``lengths`` [B]."""
    if not seqs:
        raise ValueError("no captions to pad")
    lengths = torch.as_tensor([len(x) for x in seqs], dtype=torch.long)
    captions = torch.zeros(len(seqs), max(int(lengths.max()), 1), dtype=torch.long)
    for r, x in enumerate(seqs):
        captions[r, :len(x)] = torch.as_tensor(list(x), dtype=torch.long)
    return captions, lengths


def batch_to(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """A batch's tensors on ``device`` (the images in channels_last memory format if asked)."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last and "images" in out:
        out["images"] = out["images"].contiguous(memory_format=torch.channels_last)
    return out


def sort_by_length(lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order that sorts ``lengths`` descending (stable), and the inverse order that restores the original.

    ``x_sorted = x[order]`` and ``x_sorted[restore] == x``.
    """
    order = torch.sort(lengths, descending=True, stable=True).indices
    restore = torch.empty_like(order)
    restore[order] = torch.arange(order.numel(), device=order.device)
    return order, restore


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, *, shuffle: bool, drop_last: bool,
                num_workers: int = 0, sampler: torch.utils.data.Sampler | None = None,
                generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader with :func:`collate_batch`.

    Without a ``generator`` one seeded with 0 is used, so creating a loader never draws from the global torch
    RNG (which would shift dropout and noise streams between a straight and a resumed run).
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        drop_last=drop_last, num_workers=num_workers, collate_fn=collate_batch, generator=generator,
        persistent_workers=False,
    )


class EpochSampler(torch.utils.data.Sampler[int]):
    """A seeded sampler whose order depends only on (seed, epoch), sharded across ranks, resumable mid-epoch.

    Each epoch shuffles ``range(n)`` with a generator seeded by ``(seed, epoch)``; with ``drop_last`` the order
    is cut to a multiple of ``world_size * batch_size`` so every rank gets the same number of full batches.
    Rank ``r`` takes positions ``r, r + world_size, ...``. ``set_epoch(epoch, start_batch)`` skips the first
    ``start_batch`` batches of this rank (resuming inside an epoch).
    """

    def __init__(self, n: int, *, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(self.n)
        else:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        per_step = self.world_size * self.batch_size
        if self.drop_last:
            order = order[: len(order) // per_step * per_step]
        elif len(order) % self.world_size:  # pad by wrapping so that every rank has the same count
            order = torch.cat([order, order[: self.world_size - len(order) % self.world_size]])
        return order[self.rank::self.world_size]

    @staticmethod
    def resume_batch(batch: int, *, old_world_size: int, old_batch_size: int, world_size: int,
                     batch_size: int) -> int:
        """The start batch, under a new (world size, batch size), of an epoch left after ``batch`` old batches.

        Rank ``r`` takes positions ``r, r + W, ...``, so after ``b`` batches every rank together has taken exactly
        the first ``b * W * B`` positions of the epoch's order; the new start skips at least those (rounded up
        to a whole new global batch), so no sample of the epoch is seen twice.
        """
        consumed = int(batch) * old_world_size * old_batch_size
        per_step = world_size * batch_size
        return -(-consumed // per_step)

    def batches_per_epoch(self) -> int:
        k = len(self._order())
        return k // self.batch_size if self.drop_last else -(-k // self.batch_size)

    def __iter__(self):
        return iter(self._order()[self.start_batch * self.batch_size:].tolist())

    def __len__(self) -> int:
        return max(0, len(self._order()) - self.start_batch * self.batch_size)
