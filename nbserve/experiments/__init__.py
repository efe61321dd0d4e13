"""A/B experiments: route a model's unpinned requests between a production and an experimental arm
(``split`` or ``shadow``), measure both, promote or roll back. See ``Experiment``."""

from __future__ import annotations

from nbserve.experiments.experiment import Arms, Experiment, Target
from nbserve.experiments.router import EXPERIMENTAL, MODES, PRODUCTION, Mode, Router

__all__ = ["EXPERIMENTAL", "MODES", "PRODUCTION", "Arms", "Experiment", "Mode", "Router", "Target"]
