"""t2igan: text-to-image GANs (SSA-GAN and its lineage) with one data pipeline, trainer and evaluator.

Importing the package is cheap: submodules (and torch) load when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_config"]


def load_config(path: str, cls: type) -> Any:
    """Load a YAML/JSON config file strictly into the dataclass ``cls`` (see :mod:`t2igan.config`)."""
    from t2igan.config import load_config as _load

    return _load(path, cls)
