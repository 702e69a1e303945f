"""Objectives: each family's training algorithm as optimizers and phases (see :mod:`t2igan.objectives.base`)."""

from t2igan.objectives.attngan import AttnGANObjective, AttnGANObjectiveConfig
from t2igan.objectives.base import OBJECTIVES, Networks, Objective, OptimizerSpec, Phase, StepContext
from t2igan.objectives.dfgan import DFGANObjective, DFGANObjectiveConfig
from t2igan.objectives.ssagan import SSAGANObjective, SSAGANObjectiveConfig
from t2igan.objectives.stackgan import StackGANObjective, StackGANObjectiveConfig
from t2igan.objectives.target_aware import TargetAwareConfig, TargetAwareObjective

__all__ = ["AttnGANObjective", "AttnGANObjectiveConfig", "StackGANObjective", "StackGANObjectiveConfig", "OBJECTIVES", "Networks", "Objective", "OptimizerSpec", "Phase", "StepContext", "DFGANObjective",
           "DFGANObjectiveConfig", "SSAGANObjective", "SSAGANObjectiveConfig", "TargetAwareConfig",
           "TargetAwareObjective"]
