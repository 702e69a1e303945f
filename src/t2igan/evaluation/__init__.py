"""Evaluation: the METRICS registry and the metrics (R-precision; FID, IS, KID and more follow)."""

from t2igan.evaluation.base import METRICS
from t2igan.evaluation.r_precision import RPrecisionResult, r_precision

__all__ = ["METRICS", "RPrecisionResult", "r_precision"]
