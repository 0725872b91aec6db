"""Sample-quality metrics: FID and class-aware scores in the features of a small CNN trained on the
dataset itself."""

from __future__ import annotations

from genopt.metrics.class_aware import class_coverage, intra_fid, label_accuracy, unsure_share
from genopt.metrics.features import FeatureNet, feature_cache_key
from genopt.metrics.fid import EVAL_NOISE_SEED, FidEvaluator, NonFiniteImageError
from genopt.metrics.frechet import frechet_distance
from genopt.metrics.networks import feature_network
from genopt.metrics.scores import Scores
from genopt.metrics.statistics import SampleStatistics, statistics_from_features

__all__ = [
    "EVAL_NOISE_SEED",
    "FeatureNet",
    "FidEvaluator",
    "NonFiniteImageError",
    "SampleStatistics",
    "Scores",
    "class_coverage",
    "feature_cache_key",
    "feature_network",
    "frechet_distance",
    "intra_fid",
    "label_accuracy",
    "statistics_from_features",
    "unsure_share",
]
