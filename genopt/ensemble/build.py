"""Build an ensemble from a study's best trials and score its modes on validation and test.

The study's own objective (FID, or intra-FID for a cGAN) chooses everything on the validation
split: the members, the mixture weights, the mode. The test split is read once at the end, for the
report only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound

from genopt.checkpoints import load_trial_checkpoint
from genopt.data import Dataset
from genopt.ensemble.generator import MODES, EnsembleGenerator
from genopt.ensemble.mixture import greedy_mixture, mix_sample_statistics
from genopt.ensemble.rejection import CONFIDENCE, FIT_DRAWS, MIN_AUTO_RATE, fit_rejection
from genopt.errors import GenoptError
from genopt.metrics import EVAL_NOISE_SEED, FidEvaluator, SampleStatistics
from genopt.metrics.scores import SCORES
from genopt.models import Generator
from genopt.study.artifacts.feature_net import network_line, study_network
from genopt.study.artifacts.retention import kept_checkpoints
from genopt.study.artifacts.stores import artifact_store as open_store
from genopt.study.record.facts import stored_spec, study_artifact_location, study_dataset
from genopt.study.storage.database import load_existing_study

# Seeds the mean ensemble's draws for its scores, apart from the members' evaluation noise.
ENSEMBLE_NOISE_SEED = 54321
# Seed the rejection filter's fit and, one up, its scored draws.
REJECTION_SEED = 65432
REJECTIONS = ("auto", "classes", "none")
SPLITS = ("validation", "test")


@dataclass(frozen=True)
class Member:
    """One of the study's best trials, rebuilt from its stored checkpoint."""

    trial_number: int
    value: float
    generator: Generator


@dataclass
class EnsembleBuild:
    """What ``build_ensemble`` chose and measured.

    Attributes:
        ensemble: the chosen mode's ensemble, on the CPU.
        members: the top-k candidates, best first.
        objective: the score that chose (``fid`` or ``intra_fid``), the study's own.
        scores: ``{"best_single" | "mean" | "mixture": {"validation" | "test": {score: value}}}``.
        mixture_weights: the greedy weights, one per candidate (zeros included).
            With rejection sampling, ``scores["rejection"]`` holds the filtered export's scores.
        chosen: the members of ``ensemble``, in its order.
        metadata: plain values for the checkpoint: study, dataset, model kind, sample budget, ...
    """

    ensemble: EnsembleGenerator
    members: list[Member]
    objective: str
    scores: dict[str, dict[str, dict[str, float]]]
    mixture_weights: list[float]
    chosen: list[Member]
    metadata: dict[str, Any] = field(default_factory=dict)


def load_members(study: optuna.Study, store, *, top_k: int) -> list[Member]:
    """The ``top_k`` feasible COMPLETE trials with a stored checkpoint, best value first.

    A worker's retention may remove a checkpoint between listing it and reading it (a study still
    running): that trial is skipped, the next kept one taken in its place, and one line on stderr
    says so. A checkpoint opened before its removal still reads whole (the file lives on while open).

    Raises:
        GenoptError: no such trial (or every one removed while reading), or a checkpoint that is
            not a generator's.
    """
    kept = kept_checkpoints(study, store)
    ranked = sorted(kept, key=lambda number: (study.trials[number].value, number))
    if not ranked:
        raise GenoptError(
            f"study {study.study_name!r} has no COMPLETE trial with a stored checkpoint: "
            "run `genopt study` until one completes"
        )
    members, removed = [], []
    for number in ranked:
        if len(members) == top_k:
            break
        name = f"trial {number}'s checkpoint"
        try:
            reader = store.open_reader(kept[number])
        except ArtifactNotFound:  # removed by a worker's retention since it was listed
            removed.append(number)
            continue
        with reader as f:
            generator, _ = load_trial_checkpoint(f, name=name)
        members.append(Member(number, float(study.trials[number].value), generator))
    if removed:
        taken = ", ".join(str(m.trial_number) for m in members) or "none"
        which = ("trial " if len(removed) == 1 else "trials ") + ", ".join(map(str, removed))
        print(
            f"genopt ensemble: skipped {which}: checkpoint removed by a worker's retention while "
            f"reading; members are trials {taken}",
            file=sys.stderr,
        )
    if not members:
        raise GenoptError(
            f"every checkpoint of study {study.study_name!r} was removed while reading it: "
            "run genopt ensemble again"
        )
    return members


def dataset_description(dataset: Dataset) -> dict[str, Any]:
    """The export's record of its data: name, sha256, and what its images and classes are.

    ``image_shape`` is (C, H, W), ``channels`` C and ``image_size`` H (images are square);
    ``class_names`` holds every class's name in label order, the indices ("0", "1", ...) for IDX
    data, and is empty for data without classes.
    """
    c, h, _ = dataset.image_shape
    return {
        "name": dataset.name,
        "sha256": dataset.sha256,
        "channels": c,
        "image_size": h,
        "image_shape": [int(x) for x in dataset.image_shape],
        "class_names": dataset.named_classes,
    }


def _statistics(evaluator: FidEvaluator, sample, n: int, conditional: bool) -> SampleStatistics:
    try:
        return evaluator.sample_statistics(sample, n, conditional=conditional)
    except ValueError as exc:
        raise GenoptError(f"cannot score the ensemble: {exc}") from None


def build_ensemble(
    *,
    study_name: str,
    top_k: int = 5,
    mode: str = "auto",
    storage_url: str | None = None,
    fid_samples: int | None = None,
    rounds: int = 25,
    data_dir: Path | None = None,
    artifact_store: str | Path | None = None,
    rejection: str = "auto",
    confidence: float | None = None,
) -> EnsembleBuild:
    """Combine the study's ``top_k`` best generators, score best single / mean / mixture, choose.

    Args:
        study_name: a study in the storage, with COMPLETE trials whose checkpoints are kept.
        top_k: how many of the best trials are candidates, at least 1.
        mode: ``mean``, ``mixture``, or ``auto`` (the one with the lower validation objective).
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        fid_samples: generated images per evaluation; default the study's own budget.
        rounds: rounds of greedy mixture selection.
        data_dir: the study's IDX folder, when it moved; default where the study found its data.
        artifact_store: the study's artifact store (a folder or ``s3://`` URL), when it moved;
            default the one it wrote to.
        rejection: ``classes``: the export samples through a filter toward the training split's
            classes (``genopt.ensemble.rejection``, unconditional ensembles of labelled data only);
            ``none``; ``auto`` (default): ``classes`` where it applies and keeps at least
            ``MIN_AUTO_RATE`` of the candidates.
        confidence: the filter keeps only images whose top class probability is at least this;
            default ``CONFIDENCE`` (0.99).

    Raises:
        GenoptError: bad input, a missing study, no usable checkpoint, or other data than the study's.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise GenoptError(f"--top-k must be a positive integer, got {top_k!r}")
    if mode not in (*MODES, "auto"):
        raise GenoptError(f"mode must be auto, mean or mixture, got {mode!r}")
    if fid_samples is not None and fid_samples < 2:
        raise GenoptError(f"--fid-samples must be at least 2, got {fid_samples}")
    if rejection not in REJECTIONS:
        raise GenoptError(f"--rejection must be one of {', '.join(REJECTIONS)}, got {rejection!r}")
    confidence = CONFIDENCE if confidence is None else confidence
    if isinstance(confidence, bool) or not isinstance(confidence, float | int) or not 0 < confidence < 1:
        raise GenoptError(f"--rejection-confidence must be a number in (0, 1), got {confidence!r}")
    study = load_existing_study(study_name, storage_url)
    location = study_artifact_location(study, artifact_store)
    store = open_store(location)
    members = load_members(study, store, top_k=top_k)
    spec = stored_spec(study)
    dataset = study_dataset(study, data_dir)
    n = fid_samples or spec.fid_samples
    objective = spec.objective_name
    conditional = members[0].generator.config.num_classes > 0
    filtered = rejection == "classes" or (rejection == "auto" and not conditional and dataset.labelled)
    if filtered and (conditional or not dataset.labelled):
        raise GenoptError(
            "--rejection classes needs an unconditional study of labelled data "
            f"(study {study_name!r} is {'conditional' if conditional else 'of unlabelled images'})"
        )

    # Scored on the device the study's trials were scored on by default (CUDA when present), with the
    # same CPU-drawn noise, so the best single member's score is its trial's value; exported from the CPU.
    # The study's own feature network, so the members are compared as their trials were.
    net = study_network(study, dataset, location, store=store)
    print(network_line(net), flush=True)
    evaluator = FidEvaluator(dataset, feature_net=net)

    def value(stats: SampleStatistics) -> float:
        """The objective as a loss: lower is better, NaN worst (the registry's ``loss``)."""
        return SCORES[objective].loss(evaluator.scores_of(stats).get(objective))

    member_stats = []
    for m in members:
        m.generator.to(evaluator.device)
        noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        sample = lambda y, g=m.generator, z=noise: g.sample(y, z)  # noqa: E731
        member_stats.append(_statistics(evaluator, sample, n, conditional))
    values = [value(s) for s in member_stats]
    best = min(range(len(members)), key=lambda i: values[i])

    # A conditional ensemble's classes are the dataset's, named as the dataset names them.
    class_names = dataset.named_classes if conditional else None
    mean_ensemble = EnsembleGenerator(
        [m.generator for m in members], [1.0] * len(members), mode="mean", class_names=class_names
    )
    mean_ensemble.to(evaluator.device)
    noise = torch.Generator().manual_seed(ENSEMBLE_NOISE_SEED)
    mean_stats = _statistics(
        evaluator, lambda y: mean_ensemble.sample(len(y), y, generator=noise) * 2 - 1, n, conditional
    )
    selection = greedy_mixture(member_stats, value, rounds=rounds, mix=mix_sample_statistics)
    mix_stats = mix_sample_statistics(member_stats, selection.weights)

    # The test split is read here, after every choice is made.
    candidates = {"best_single": member_stats[best], "mean": mean_stats, "mixture": mix_stats}
    scores = {
        name: {split: evaluator.scores_of(s, split=split).as_dict() for split in SPLITS}
        for name, s in candidates.items()
    }
    if mode == "auto":
        mode = "mean" if value(mean_stats) < value(mix_stats) else "mixture"
    if mode == "mean":
        ensemble, chosen = mean_ensemble, members
    else:
        used = [i for i, w in enumerate(selection.weights) if w > 0]
        chosen = [members[i] for i in used]
        ensemble = EnsembleGenerator(
            [m.generator for m in chosen],
            [selection.weights[i] for i in used],
            mode="mixture",
            class_names=class_names,
        )
    if filtered:  # fitted on draws of its own, scored on others; the test split stays for the report
        target = torch.bincount(dataset.train.labels, minlength=dataset.num_classes)
        rng = torch.Generator().manual_seed(REJECTION_SEED)
        draws = FIT_DRAWS * n
        fitted = fit_rejection(ensemble, net, target, samples=draws, generator=rng, confidence=confidence)
        if fitted.acceptance_rate == 0 and rejection == "classes":
            raise GenoptError(
                f"--rejection classes: none of {draws} samples is at least {confidence:g} sure to be "
                "any class by the study's feature network, so nothing would be kept; export with "
                "--rejection none or a lower --rejection-confidence"
            )
        if rejection == "auto" and fitted.acceptance_rate < MIN_AUTO_RATE:
            print(
                f"genopt ensemble: no rejection sampling: it would keep {fitted.acceptance_rate:.1%} of "
                f"candidates (auto takes it from {MIN_AUTO_RATE:.0%}; --rejection classes forces it)"
            )
        else:
            ensemble.rejection = fitted
            rng = torch.Generator().manual_seed(REJECTION_SEED + 1)
            kept = _statistics(evaluator, lambda y: ensemble.sample(len(y), generator=rng) * 2 - 1, n, False)
            scores["rejection"] = {
                split: evaluator.scores_of(kept, split=split).as_dict() for split in SPLITS
            }
    metadata = {
        "study": study_name,
        "model": spec.model,
        "objective": objective,
        "dataset": dataset_description(dataset),
        "feature_net_sha256": net.sha256,
        "top_k": top_k,
        "fid_samples": n,
        "greedy_rounds": rounds,
        "best_single_trial": members[best].trial_number,
        "candidates": [
            {"trial_number": m.trial_number, "value": m.value, "mixture_weight": w}
            for m, w in zip(members, selection.weights, strict=True)
        ],
    }
    ensemble.cpu()
    for m in members:
        m.generator.cpu()
    return EnsembleBuild(ensemble, members, objective, scores, selection.weights, chosen, metadata)
