"""Seeded randomness that does not depend on batch composition, process count or device.

:func:`image_noise` gives image ``index`` under ``seed`` its own CPU generator, so a sample never depends on
which other images share its batch. :func:`step_generator` does the same for a training step on a rank.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "image_noise", "step_generator"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence, so nearby inputs give unrelated seeds)."""
    ss = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def image_noise(seed: int, index: int, nz: int, truncation: float | None = None) -> torch.Tensor:
    """The noise vector of image ``index`` under ``seed``: N(0, 1), or ``truncation * TruncNormal(-2, 2)``
    (DF-GAN's truncated sampling) when ``truncation`` is given."""
    g = torch.Generator().manual_seed(derive_seed(seed, index))
    z = torch.randn(nz, generator=g)
    if truncation is None:
        return z
    for _ in range(100):  # resample values outside [-2, 2]
        bad = z.abs() > 2
        if not bad.any():
            break
        z[bad] = torch.randn(int(bad.sum()), generator=g)
    return truncation * z


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator for training step ``step`` on ``rank`` (the same draws after a resume)."""
    return torch.Generator().manual_seed(derive_seed(seed, step, rank, 0x5EED))
