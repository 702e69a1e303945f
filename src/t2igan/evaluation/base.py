"""The metric registry. A metric is a function returning a result with ``as_dict() -> {name: value}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from t2igan.registry import Registry

__all__ = ["METRICS"]

METRICS: Registry[Callable[..., Any]] = Registry("metric")
