"""Ensembles of a study's best generators: pixel mean or mixture, weights chosen on validation FID."""

from __future__ import annotations

from genopt.ensemble.build import EnsembleBuild, Member, build_ensemble, load_members
from genopt.ensemble.generator import MODES, EnsembleGenerator
from genopt.ensemble.mixture import Selection, greedy_mixture, mixture_statistics

__all__ = [
    "MODES",
    "EnsembleBuild",
    "EnsembleGenerator",
    "Member",
    "Selection",
    "build_ensemble",
    "greedy_mixture",
    "load_members",
    "mixture_statistics",
]
