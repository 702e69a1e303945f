"""Feature extractors, sharded extraction (1 and 2 gloo processes) and the reference-statistics cache.

Nothing here needs downloaded weights: the metrics run on the seeded ``random-tiny`` extractor, and the two
Inception extractors are built from randomly initialised weight files written by the tests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from t2igan.evaluation import (
    EXTRACTORS,
    build_extractor,
    extract_features,
    extractor_protocol,
    feature_stats,
    fid,
    kid,
    reference_cache_path,
    reference_stats,
)
from t2igan.evaluation.features import FID_INCEPTION_WEIGHTS_FILES, TORCHVISION_INCEPTION_WEIGHTS_FILES

N = 23


def make_batch(indices: list[int]) -> torch.Tensor:
    """Image ``i`` depends on ``i`` only (its own seeded generator), in [-1, 1]."""
    return torch.stack([torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1000 + i)) * 2 - 1
                        for i in indices])


class CountingBatch:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, indices: list[int]) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("disk on fire")
        return make_batch(indices)


# -- extractors -------------------------------------------------------------------------------------------------


def test_random_tiny_is_seeded_and_labelled():
    assert {"random-tiny", "inception-fid", "inception-torchvision"} <= set(EXTRACTORS.names())
    a, b, c = build_extractor("random-tiny"), build_extractor("random-tiny"), build_extractor("random-tiny", seed=3)
    x = make_batch([0, 1, 2])
    out = a(x)
    assert out["pool"].shape == (3, 64) and out["logits"].shape == (3, 10)
    assert torch.equal(out["pool"], b(x)["pool"]) and not torch.allclose(out["pool"], c(x)["pool"])
    assert a.name == "random-tiny" and a.weights_hash == "random-seed-0" and a.feature_dim == 64
    assert c.weights_hash == "random-seed-3" and not a.training
    assert extractor_protocol(c) == {"extractor": "random-tiny", "weights_hash": "random-seed-3"}
    with pytest.raises(ValueError, match="float images"):
        a((x * 127.5 + 127.5).to(torch.uint8))


def test_extraction_order_and_batch_size_independence():
    ext = build_extractor("random-tiny", seed=1)
    direct = ext(make_batch(list(range(N))))
    for bs in (1, 4, N, 100):
        got = extract_features(ext, make_batch, N, batch_size=bs)
        assert set(got) == {"pool", "logits"}
        # equal up to float32 rounding: CPU convolutions may pick another algorithm for another batch size
        torch.testing.assert_close(got["pool"], direct["pool"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["logits"], direct["logits"], rtol=1e-5, atol=1e-6)
    images = make_batch(list(range(N)))
    torch.testing.assert_close(extract_features(ext, images, N, batch_size=5)["pool"], direct["pool"],
                               rtol=1e-5, atol=1e-6)


def test_extraction_checks_what_get_batch_returns():
    ext = build_extractor("random-tiny")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extract_features(ext, lambda idx: make_batch(idx) * 3, 4)
    with pytest.raises(ValueError, match="float images"):
        extract_features(ext, lambda idx: torch.zeros(len(idx), 3, 8, 8, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="3 images for 4 indices"):
        extract_features(ext, lambda idx: make_batch(idx[:3]), 4, batch_size=4)
    with pytest.raises(ValueError, match="n=0"):
        extract_features(ext, make_batch, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from t2igan.utils import dist as d

    assert d.init_from_env("cpu")
    ext = build_extractor("random-tiny", seed=1)
    feats = extract_features(ext, make_batch, N, batch_size=4)
    ref = reference_stats(ext, "toy-2proc", make_batch, N, Path(out_dir) / "cache", batch_size=4)
    counter = CountingBatch()
    again = reference_stats(ext, "toy-2proc", counter, N, Path(out_dir) / "cache", batch_size=4)
    torch.save({"pool": feats["pool"], "logits": feats["logits"], "mu": torch.from_numpy(ref["mu"]),
                "mu_again": torch.from_numpy(again["mu"]), "calls": counter.calls},
               Path(out_dir) / f"rank{rank}.pt")
    d.cleanup()


def test_two_gloo_processes_equal_one(tmp_path):
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_dist_worker, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "distributed extraction hung"
    assert [p.exitcode for p in procs] == [0, 0]

    ext = build_extractor("random-tiny", seed=1)
    one = extract_features(ext, make_batch, N, batch_size=4)
    mu_one, _ = feature_stats(one["pool"])
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        torch.testing.assert_close(got["pool"], one["pool"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["logits"], one["logits"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["mu"].numpy(), mu_one, rtol=1e-5, atol=1e-7)
        assert torch.equal(got["mu_again"], got["mu"]) and got["calls"] == 0  # the cache was read on both ranks
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["toy-2proc-random-tiny-random-seed-1.npz"]


# -- reference statistics cache ---------------------------------------------------------------------------------


def test_reference_stats_are_cached(tmp_path):
    ext = build_extractor("random-tiny", seed=2)
    first_batch = CountingBatch()
    ref = reference_stats(ext, "toy-test-v1", first_batch, N, tmp_path, batch_size=8)
    assert first_batch.calls == 3
    path = tmp_path / "toy-test-v1-random-tiny-random-seed-2.npz"
    assert ref["path"] == str(path) == str(reference_cache_path(tmp_path, "toy-test-v1", ext))
    assert sorted(os.listdir(tmp_path)) == [path.name]  # written atomically: no temporary file left behind
    feats = extract_features(ext, make_batch, N)["pool"]
    mu, sigma = feature_stats(feats)
    np.testing.assert_allclose(ref["mu"], mu, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ref["sigma"], sigma, rtol=1e-4, atol=1e-7)
    assert ref["mu"].dtype == np.float64 and ref["sigma"].dtype == np.float64
    assert ref["features"].shape == (N, 64) and ref["num_features"] == N
    assert ref["num_images"] == N and ref["extractor"] == "random-tiny" and ref["weights_hash"] == "random-seed-2"
    assert ref["fingerprint"] == "toy-test-v1"

    again = CountingBatch()
    cached = reference_stats(ext, "toy-test-v1", again, N, tmp_path, batch_size=8)
    assert again.calls == 0
    for k in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(cached[k], ref[k])
    assert {k: cached[k] for k in ("num_images", "extractor", "weights_hash", "fingerprint", "path")} == \
           {k: ref[k] for k in ("num_images", "extractor", "weights_hash", "fingerprint", "path")}

    # the metrics take the dict as it is and report its protocol
    gen = extract_features(ext, lambda idx: make_batch([i + 500 for i in idx]), N)["pool"]
    res = fid(gen, cached, **extractor_protocol(ext)).as_dict()
    assert res["fid_reference"] == "toy-test-v1" and res["fid_weights_hash"] == "random-seed-2"
    assert kid(gen, cached, subsets=3).as_dict()["kid_num_reference"] == N


def test_reference_cache_keys(tmp_path, caplog):
    ext2, ext3 = build_extractor("random-tiny", seed=2), build_extractor("random-tiny", seed=3)
    reference_stats(ext2, "toy-a", make_batch, 6, tmp_path)
    reference_stats(ext2, "toy-b", make_batch, 6, tmp_path)
    reference_stats(ext3, "toy-a", make_batch, 6, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["toy-a-random-tiny-random-seed-2.npz", "toy-a-random-tiny-random-seed-3.npz",
                                           "toy-b-random-tiny-random-seed-2.npz"]

    class Hashed(torch.nn.Module):  # a real weights hash is shortened to 12 hex digits in the name
        name, weights_hash, feature_dim = "inception-fid", hashlib.sha256(b"w").hexdigest(), 64

    assert reference_cache_path(tmp_path, "cub-test", Hashed()).name == \
        f"cub-test-inception-fid-{hashlib.sha256(b'w').hexdigest()[:12]}.npz"
    for bad in ("", "../up", "a/b", ".hidden", "sp ace", "x" * 201):
        with pytest.raises(ValueError, match="filename-safe"):
            reference_stats(ext2, bad, make_batch, 6, tmp_path)

    # another number of images recomputes (and says why); so does an unreadable file
    counter = CountingBatch()
    with caplog.at_level(logging.WARNING, logger="t2igan.evaluation.features"):
        assert reference_stats(ext2, "toy-a", counter, 7, tmp_path)["num_images"] == 7
    assert counter.calls > 0 and "num_images" in caplog.text
    path = tmp_path / "toy-a-random-tiny-random-seed-2.npz"
    path.write_bytes(b"not a zip")
    counter = CountingBatch()
    assert reference_stats(ext2, "toy-a", counter, 7, tmp_path)["num_images"] == 7 and counter.calls > 0


def test_failed_extraction_leaves_no_file(tmp_path):
    ext = build_extractor("random-tiny")
    with pytest.raises(RuntimeError, match="disk on fire"):
        reference_stats(ext, "toy", CountingBatch(fail_after=1), N, tmp_path, batch_size=4)
    assert os.listdir(tmp_path) == []


def test_kid_features_are_subsampled(tmp_path):
    ext = build_extractor("random-tiny")
    ref = reference_stats(ext, "toy", make_batch, N, tmp_path, max_kid_features=10)
    full = extract_features(ext, make_batch, N)["pool"].numpy()
    assert ref["features"].shape == (10, 64) and ref["num_features"] == 10 and ref["num_images"] == N
    rows = [int(np.argmin(np.abs(full - f).sum(axis=1))) for f in ref["features"]]
    assert rows == sorted(set(rows))  # distinct images, in index order
    np.testing.assert_allclose(ref["mu"], full.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-7)


# -- Inception extractors: weights from a path or the hub cache, never downloaded --------------------------------


@pytest.mark.parametrize(("name", "files"), [("inception-fid", FID_INCEPTION_WEIGHTS_FILES),
                                             ("inception-torchvision", TORCHVISION_INCEPTION_WEIGHTS_FILES)])
def test_missing_inception_weights_name_the_paths(tmp_path, monkeypatch, name, files):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        build_extractor(name)
    for f in files:
        assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / f) in str(err.value)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_extractor(name, weights_path=tmp_path / "nowhere.pth")


def _random_inception_file(path: Path, num_classes: int, aux_logits: bool) -> str:
    from torchvision.models import inception_v3

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = inception_v3(weights=None, aux_logits=aux_logits, init_weights=False, num_classes=num_classes)
    torch.save(net.state_dict(), path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_torchvision_inception_from_the_hub_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    path = tmp_path / "hub" / "checkpoints" / TORCHVISION_INCEPTION_WEIGHTS_FILES[0]
    path.parent.mkdir(parents=True)
    digest = _random_inception_file(path, 1000, aux_logits=True)
    with caplog.at_level(logging.WARNING, logger="t2igan.evaluation.features"):
        ext = build_extractor("inception-torchvision")
    assert "not that of the standard torchvision Inception-v3 weights (0cc3c7bd/1a9a5a14...)" in caplog.text
    assert ext.name == "inception-torchvision" and ext.weights_hash == digest and ext.feature_dim == 2048
    out = ext(make_batch([0, 1]))
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1000)
    assert torch.isfinite(out["pool"]).all()


def test_fid_inception_from_a_path_without_download(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download weights")

    monkeypatch.setattr(tfi, "load_state_dict_from_url", no_download)
    path = tmp_path / "fid_weights.pth"
    digest = _random_inception_file(path, 1008, aux_logits=False)  # the FID Inception's keys and shapes
    ext = build_extractor("inception-fid", weights_path=path)
    assert ext.name == "inception-fid" and ext.weights_hash == digest and ext.feature_dim == 2048
    x = make_batch([0, 1])
    out = ext(x)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    # torch-fidelity's network on the uint8 images as they would be saved
    pool, logits = ext.net(((x + 1) * 127.5).round().to(torch.uint8))
    assert torch.equal(out["pool"], pool) and torch.equal(out["logits"], logits)


class _NotWeights:
    pass


def test_weights_that_are_not_a_plain_state_dict_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _NotWeights()}, path)
    with pytest.raises(ValueError, match="evil.pth"):
        build_extractor("inception-fid", weights_path=path)
