"""SSA-GAN's training algorithm: the target-aware objective with the official SSA-GAN schedule.

Official defaults (``wtliao/text2image`` ``main.py``): Adam G 1e-4, D 4e-4, betas (0.0, 0.9); hinge loss with
mismatched captions; MA-GP (k=2, p=6) as a second discriminator step; DAMSM in the generator loss with weight
0.05 and gamma1=5, gamma2=5, gamma3=10; the text encoder frozen (``main_finetune.py``: fine-tuned with Adam
4e-5 and DAMSM weight 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from t2igan.objectives.base import OBJECTIVES
from t2igan.objectives.target_aware import TargetAwareConfig, TargetAwareObjective

__all__ = ["SSAGANObjectiveConfig", "SSAGANObjective"]


@dataclass
class SSAGANObjectiveConfig(TargetAwareConfig):
    gp_schedule: Literal["separate", "combined"] = "separate"
    damsm_weight: float = 0.05


class SSAGANObjective(TargetAwareObjective):
    config_class = SSAGANObjectiveConfig


OBJECTIVES.register("ssagan", SSAGANObjective)
