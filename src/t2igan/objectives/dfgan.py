"""DF-GAN's (CVPR 2022) training algorithm: the target-aware objective with DF-GAN's schedule.

Official defaults (``tobran/DF-GAN`` ``src/train.py``): Adam G 1e-4, D (NetD + NetC) 4e-4, betas (0.0, 0.9);
hinge loss with mismatched captions; MA-GP (k=2, p=6) added to the discriminator loss in one step, reusing
the real forward; no DAMSM term in the generator loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from t2igan.objectives.base import OBJECTIVES
from t2igan.objectives.target_aware import TargetAwareConfig, TargetAwareObjective

__all__ = ["DFGANObjectiveConfig", "DFGANObjective"]


@dataclass
class DFGANObjectiveConfig(TargetAwareConfig):
    gp_schedule: Literal["separate", "combined"] = "combined"
    damsm_weight: float = 0.0


class DFGANObjective(TargetAwareObjective):
    config_class = DFGANObjectiveConfig


OBJECTIVES.register("dfgan", DFGANObjective)
