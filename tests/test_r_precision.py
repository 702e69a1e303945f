"""R-precision (DM-GAN protocol): closed-form cases."""

from __future__ import annotations

import pytest
import torch

from t2igan.evaluation import METRICS, r_precision


def _classes(n, k):
    return torch.arange(n) % k


def test_identical_embeddings_give_one():
    torch.manual_seed(0)
    codes = torch.randn(400, 16)
    cls = _classes(400, 40)
    r = r_precision(codes, torch.arange(400), codes.clone(), cls, cls, trials=3000)
    assert r.mean == 1.0 and r.std == 0.0


def test_random_embeddings_give_about_one_in_candidates():
    torch.manual_seed(1)
    n = 3000
    cls = _classes(n, 300)
    r = r_precision(torch.randn(n, 32), torch.arange(n), torch.randn(n, 32), cls, cls, trials=30000)
    assert r.mean == pytest.approx(0.01, abs=0.004)
    r20 = r_precision(torch.randn(n, 32), torch.arange(n), torch.randn(n, 32), cls, cls, trials=30000,
                      candidates=20)
    assert r20.mean == pytest.approx(0.05, abs=0.01)


def test_negatives_come_only_from_other_classes():
    # every caption of the query's own class is a perfect match too; drawing one would cost the hit
    torch.manual_seed(2)
    n, k = 200, 20
    cls = _classes(n, k)
    centers = torch.randn(k, 8)
    img = centers[cls]
    sent = centers[cls].clone()
    r = r_precision(img, torch.arange(n), sent, cls, cls, trials=2000)
    assert r.mean == 1.0


def test_ties_share_credit():
    # the true caption and every negative embed identically: each query gets 1/candidates credit
    n = 50
    img = torch.ones(n, 4)
    sent = torch.ones(n, 4)
    cls = torch.arange(n)
    r = r_precision(img, torch.arange(n), sent, cls, cls, trials=1000, candidates=10)
    assert r.mean == pytest.approx(0.1)


def test_protocol_is_recorded_and_seeded():
    torch.manual_seed(3)
    cls = _classes(500, 50)
    a, b = torch.randn(500, 8), torch.randn(500, 8)
    r1 = r_precision(a, torch.arange(500), b, cls, cls, trials=2000, folds=10, candidates=50, seed=7)
    r2 = r_precision(a, torch.arange(500), b, cls, cls, trials=2000, folds=10, candidates=50, seed=7)
    assert r1 == r2
    d = r1.as_dict()
    assert d["r_precision_trials"] == 2000 and d["r_precision_folds"] == 10
    assert d["r_precision_candidates"] == 50 and d["r_precision_seed"] == 7


def test_bad_arguments():
    cls = torch.zeros(10, dtype=torch.long)
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="multiple of folds"):
        r_precision(x, torch.arange(10), x, torch.arange(10), torch.arange(10), trials=95, folds=10)
    with pytest.raises(ValueError, match="other classes"):
        r_precision(x, torch.arange(10), x, cls, cls, trials=100)


def test_registered():
    assert METRICS.get("r_precision") is r_precision
