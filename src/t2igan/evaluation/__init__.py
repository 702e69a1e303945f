"""Evaluation: the METRICS registry and the metrics (R-precision, FID, KID, Inception Score), feature extractors."""

from t2igan.evaluation.attributes import (
    AttributeAccuracyResult,
    AttributeClassifier,
    AttributeScorer,
    attribute_accuracy,
    ceiling_accuracy,
)
from t2igan.evaluation.base import METRICS
from t2igan.evaluation.features import (
    EXTRACTORS,
    FeatureExtractor,
    build_extractor,
    extract_features,
    extractor_protocol,
    reference_cache_path,
    reference_stats,
)
from t2igan.evaluation.fid import FIDResult, feature_stats, fid, frechet_distance
from t2igan.evaluation.inception_score import InceptionScoreResult, inception_score
from t2igan.evaluation.kid import KIDResult, kid
from t2igan.evaluation.r_precision import RPrecisionResult, r_precision

__all__ = [
    "AttributeAccuracyResult",
    "AttributeClassifier",
    "AttributeScorer",
    "attribute_accuracy",
    "ceiling_accuracy",
    "METRICS",
    "EXTRACTORS",
    "FeatureExtractor",
    "build_extractor",
    "extract_features",
    "extractor_protocol",
    "reference_cache_path",
    "reference_stats",
    "FIDResult",
    "feature_stats",
    "fid",
    "frechet_distance",
    "InceptionScoreResult",
    "inception_score",
    "KIDResult",
    "kid",
    "RPrecisionResult",
    "r_precision",
]
