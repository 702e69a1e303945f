"""Batching: padding to the longest caption, sorting for the LSTM and restoring the order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate_batch", "sort_by_length", "make_loader"]


def collate_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into a batch.

    ``captions`` [B, T] (T = longest caption in the batch, 0-padded), ``lengths`` [B], ``class_ids`` [B],
    ``images`` [B, 3, H, W] when the items carry images, and ``keys``, ``indices``, ``caption_indices``.
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
    return batch


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
    """A DataLoader with :func:`collate_batch`."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        drop_last=drop_last, num_workers=num_workers, collate_fn=collate_batch, generator=generator,
        persistent_workers=False,
    )
