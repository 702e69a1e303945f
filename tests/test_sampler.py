"""EpochSampler: seeded order per (seed, epoch), sharding across ranks, resuming inside an epoch."""

from __future__ import annotations

import pytest

from t2igan.data.collate import EpochSampler


def _taken(n, seed, epoch, world, bs, batches):
    """The samples all ranks took in the first ``batches`` batches of an epoch."""
    out = []
    for r in range(world):
        s = EpochSampler(n, batch_size=bs, seed=seed, rank=r, world_size=world)
        s.set_epoch(epoch)
        out += list(s)[: batches * bs]
    return out


def test_ranks_split_an_epoch_without_overlap():
    n, world, bs = 103, 3, 4
    shards = [list(EpochSampler(n, batch_size=bs, seed=1, rank=r, world_size=world)) for r in range(world)]
    flat = [i for sh in shards for i in sh]
    assert len(flat) == len(set(flat)) == n // (world * bs) * world * bs
    assert all(len(sh) == len(shards[0]) for sh in shards)
    other = list(EpochSampler(n, batch_size=bs, seed=2, rank=0, world_size=world))
    assert other != shards[0]


@pytest.mark.parametrize("old,new", [((2, 12), (1, 24)), ((1, 24), (2, 12)), ((2, 8), (1, 12)), ((1, 5), (3, 4))])
def test_resume_under_another_world_or_batch_size_sees_no_sample_twice(old, new):
    n, seed, epoch = 240, 7, 3
    (w0, b0), (w1, b1) = old, new
    done = 3
    before = _taken(n, seed, epoch, w0, b0, done)
    start = EpochSampler.resume_batch(done, old_world_size=w0, old_batch_size=b0, world_size=w1, batch_size=b1)
    after = []
    for r in range(w1):
        s = EpochSampler(n, batch_size=b1, seed=seed, rank=r, world_size=w1)
        s.set_epoch(epoch, start)
        after += list(s)
    assert not set(before) & set(after)  # nothing seen twice
    skipped = n - len(before) - len(after)
    assert 0 <= skipped < w1 * b1 + n % (w1 * b1) + 1  # at most one new global batch (and the dropped tail)
    if (w0 * b0 * done) % (w1 * b1) == 0 and n % (w1 * b1) == 0:
        assert sorted(before + after) == list(range(n))  # exactly the rest of the epoch
