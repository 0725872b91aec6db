"""Sample-quality metrics: FID in the features of a small CNN trained on the dataset itself."""

from __future__ import annotations

from genopt.metrics.features import FeatureNet, feature_cache_key, feature_network
from genopt.metrics.fid import FidEvaluator, frechet_distance

__all__ = ["FeatureNet", "FidEvaluator", "feature_cache_key", "feature_network", "frechet_distance"]
