"""The class-aware scores: pure functions of a sample's ``SampleStatistics`` and a reference split's.

* ``intra_fid`` (conditional): the mean over classes of the Fréchet distance between the features of
  the samples that *requested* class c and the reference split's images of class c (Miyato &
  Koyama 2018). Unlike pooled FID it sees a cGAN that ignores, or mixes up, its labels.
* ``label_accuracy`` (conditional): the fraction of samples the feature net classifies as the label
  they requested.
* ``class_coverage`` (unconditional): ``1 - TV(p, q) = sum_c min(p_c, q_c)``, where p is the
  histogram of the classes the net predicts for the samples and q the one it predicts for the
  reference split. 1 means the same class balance, 0 disjoint classes. The reference uses
  *predicted* rather than true labels so that the net's own confusions cancel: real images score
  about 1 whatever the net's accuracy. Total variation is bounded, symmetric and reads as "the share
  of samples that would have to change class", which a KL divergence (unbounded once a class is
  never drawn) does not.
* ``unsure_share`` (unconditional): the fraction of samples whose top class probability, by the
  feature net, is under ``UNSURE_BELOW`` (0.9): strokes that read as no class, or as two. Coverage
  sees a wrong class balance; this sees malformed samples, which coverage counts as some class.
  Real validation images give its floor (``FidEvaluator.unsure_floor``).

Pooled FID is ``genopt.metrics.frechet.frechet_distance`` of the pooled moments.
"""

from __future__ import annotations

import math

import torch

from genopt.metrics.frechet import finite_or_nan, safe_frechet_distance
from genopt.metrics.statistics import SampleStatistics


def label_accuracy(stats: SampleStatistics) -> float:
    """Fraction of samples the feature net classifies as the class they requested."""
    return finite_or_nan(float(stats.correct.sum() / stats.class_counts.sum()))


def intra_fid(stats: SampleStatistics, reference: SampleStatistics) -> float:
    """Mean over classes of the FID between samples that requested class c and reference class c.

    NaN when any class has no covariance (fewer than two samples requested it): an average over
    the classes present would reward a generator for never being asked for the hard ones.
    """
    if stats.num_classes != reference.num_classes:
        raise ValueError(f"{stats.num_classes} classes against a reference of {reference.num_classes}")
    per_class = class_frechet_distances(stats, reference)
    return finite_or_nan(math.fsum(per_class) / len(per_class))


def class_frechet_distances(stats: SampleStatistics, reference: SampleStatistics) -> list[float]:
    """Per-class Fréchet distances between two statistics' class Gaussians, NaN where undefined."""
    return [
        safe_frechet_distance(
            stats.class_mean[c], stats.class_cov[c], reference.class_mean[c], reference.class_cov[c]
        )
        for c in range(stats.num_classes)
    ]


def unsure_share(stats: SampleStatistics) -> float:
    """Fraction of samples the feature net classifies with a top probability under ``UNSURE_BELOW``."""
    return finite_or_nan(float(stats.unsure.sum() / stats.predicted.sum()))


def class_coverage(stats: SampleStatistics, reference: SampleStatistics) -> float:
    """``1 - TV`` between predicted-class histograms: 1 same balance, 0 disjoint classes."""
    p, q = stats.predicted_histogram, reference.predicted_histogram
    return finite_or_nan(float(torch.minimum(p, q).sum()))
