"""FID, KID and Inception Score against reference implementations and closed forms.

pytorch-fid's ``calculate_frechet_distance`` and torch-fidelity's ``isc_features_to_metric`` /
``kid_features_to_metric`` are the references; they are fed the same statistics, logits and features.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from t2igan.evaluation import METRICS, feature_stats, fid, frechet_distance, inception_score, kid
from t2igan.evaluation.kid import polynomial_mmd2


def _features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)  # correlated features, not a diagonal covariance
    return (rng.normal(size=(n, d)) @ mix) * scale + shift


def _reference_fid(mu1, s1, mu2, s2) -> float:
    from pytorch_fid.fid_score import calculate_frechet_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm(disp=False), which pytorch-fid passes
        return float(calculate_frechet_distance(mu1, s1, mu2, s2))


def test_registered():
    assert {"fid", "kid", "inception_score", "r_precision"} <= set(METRICS.names())
    assert METRICS.get("fid") is fid and METRICS.get("kid") is kid and METRICS.get("inception_score") is inception_score


# -- FID --------------------------------------------------------------------------------------------------------


def test_feature_stats_match_pytorch_fid_convention():
    x = _features(50, 6, 0)
    mu, sigma = feature_stats(torch.from_numpy(x).float())
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    x32 = torch.from_numpy(x).float().double().numpy()
    np.testing.assert_allclose(mu, np.mean(x32, axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x32, rowvar=False), rtol=1e-12)  # ddof=1
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(x[:1])


@pytest.mark.parametrize(("n", "d"), [(300, 16), (12, 32)])  # well conditioned; singular covariances (N < D)
def test_fid_matches_pytorch_fid(n, d):
    a, b = _features(n, d, 1), _features(n, d, 2, shift=0.3, scale=1.5)
    (mu1, s1), (mu2, s2) = feature_stats(a), feature_stats(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = _reference_fid(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)
    res = fid(a, {"mu": mu2, "sigma": s2, "num_images": n, "extractor": "x", "weights_hash": "h",
                  "fingerprint": "fp"})
    assert res.value == pytest.approx(ref, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    x = _features(400, 12, 3)
    mu, sigma = feature_stats(x)
    assert abs(fid(x, {"mu": mu, "sigma": sigma}).value) < 1e-8


def test_fid_two_gaussians_closed_form():
    rng = np.random.default_rng(4)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.2, 3.0, size=d), rng.uniform(0.2, 3.0, size=d)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed, rel=1e-10)
    # a full covariance and a multiple of it: Tr(S + cS - 2 sqrt(c) S)
    a = rng.normal(size=(d, d))
    s = a @ a.T + np.eye(d)
    c = 2.5
    closed = np.sum((mu1 - mu2) ** 2) + np.trace(s) * (1 + c - 2 * np.sqrt(c))
    assert frechet_distance(mu1, s, mu2, c * s) == pytest.approx(closed, rel=1e-9)
    # estimated from samples of the two diagonal Gaussians, the value approaches the closed form
    x = mu1 + rng.normal(size=(40000, d)) * np.sqrt(v1)
    y = mu2 + rng.normal(size=(40000, d)) * np.sqrt(v2)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    mu_y, s_y = feature_stats(y)
    assert fid(x, {"mu": mu_y, "sigma": s_y}).value == pytest.approx(closed, rel=0.03)


def test_fid_result_records_protocol_and_refuses_mixed_extractors():
    x, y = _features(30, 4, 5), _features(40, 4, 6)
    mu, sigma = feature_stats(y)
    ref = {"mu": mu, "sigma": sigma, "num_images": 40, "extractor": "inception-fid", "weights_hash": "ab" * 32,
           "fingerprint": "cub-test-1234"}
    res = fid(torch.from_numpy(x), ref, extractor="inception-fid", weights_hash="ab" * 32)
    d = res.as_dict()
    assert d["fid"] == res.value and d["fid_num_images"] == 30 and d["fid_num_reference"] == 40
    assert d["fid_extractor"] == "inception-fid" and d["fid_weights_hash"] == "ab" * 32
    assert d["fid_reference"] == "cub-test-1234"
    with pytest.raises(ValueError, match="inception-torchvision"):
        fid(x, ref, extractor="inception-torchvision")
    with pytest.raises(ValueError, match="weights"):
        fid(x, ref, weights_hash="cd" * 32)
    with pytest.raises(ValueError, match="5-d"):
        fid(_features(30, 5, 7), ref)
    with pytest.raises(KeyError, match="sigma"):
        fid(x, {"mu": mu})


# -- Inception Score --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False])
def test_inception_score_matches_torch_fidelity(shuffle):
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(253, 12, generator=torch.Generator().manual_seed(0)) * 3
    ref = isc_features_to_metric(logits, splits=10, shuffle=shuffle, rng_seed=2020)
    res = inception_score(logits, splits=10, shuffle=shuffle, seed=2020, extractor="random-tiny",
                          weights_hash="random-seed-0")
    assert res.mean == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert res.std == pytest.approx(ref["inception_score_std"], rel=1e-8)  # ddof=0, as torch-fidelity
    d = res.as_dict()
    assert d["inception_score"] == res.mean and d["inception_score_splits"] == 10
    assert d["inception_score_num_images"] == 253 and d["inception_score_extractor"] == "random-tiny"
    assert d["inception_score_weights_hash"] == "random-seed-0" and d["inception_score_shuffle"] is shuffle


def test_inception_score_closed_forms():
    k = 8
    # the same prediction for every image: p(y|x) = p(y), IS = 1
    assert inception_score(torch.randn(1, k).repeat(40, 1)).mean == pytest.approx(1.0, abs=1e-12)
    # confident predictions, classes balanced within every split: IS = number of classes
    logits = torch.full((80, k), -1e4)
    logits[torch.arange(80), torch.arange(80) % k] = 0.0
    res = inception_score(logits, shuffle=False)
    assert res.mean == pytest.approx(k, rel=1e-9) and res.std < 1e-9
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.randn(5, k))


# -- KID --------------------------------------------------------------------------------------------------------


def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    a = torch.from_numpy(_features(120, 10, 8))
    b = torch.from_numpy(_features(90, 10, 9, shift=0.2))
    ref = kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=50, rng_seed=2020, verbose=False)
    res = kid(a, b, subsets=20, subset_size=50, seed=2020)
    assert res.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert res.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-8)
    # float32 features give the same value up to float32 rounding (we compute the kernels in float64)
    assert kid(a.float(), b.float(), subsets=20, subset_size=50).mean == pytest.approx(res.mean, rel=1e-5)


def test_polynomial_mmd2_against_a_direct_sum():
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = 4
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_properties_and_protocol():
    a, b = _features(60, 5, 11), _features(60, 5, 12)
    same = kid(a, b, subsets=30, subset_size=40, seed=1)
    far = kid(a, _features(60, 5, 13, shift=1.0), subsets=30, subset_size=40, seed=1)
    assert abs(same.mean) < 0.2 * far.mean and far.mean > 0
    assert kid(a, b, subsets=30, subset_size=40, seed=1) == same  # seeded: reproducible
    # subsets shrink to the smaller set instead of failing
    small = kid(a[:25], b, subsets=5)
    assert small.subset_size == 25
    ref = {"features": b, "num_images": 600, "extractor": "random-tiny", "weights_hash": "random-seed-0",
           "fingerprint": "toy"}
    d = kid(a, ref, subsets=5, subset_size=10).as_dict()
    assert d["kid_num_reference"] == 600 and d["kid_extractor"] == "random-tiny" and d["kid_reference"] == "toy"
    assert d["kid_subsets"] == 5 and d["kid_subset_size"] == 10 and d["kid_num_images"] == 60
    with pytest.raises(ValueError, match="extractor"):
        kid(a, ref, extractor="inception-fid")
    with pytest.raises(ValueError, match="6-d"):
        kid(_features(60, 6, 14), ref)
