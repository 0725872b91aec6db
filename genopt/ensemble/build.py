"""Build an ensemble from a study's best trials and score its modes on validation and test FID.

Validation FID chooses everything (the members, the mixture weights, the mode); test FID is
computed once at the end, for the report only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from genopt.data import load_dataset
from genopt.ensemble.generator import MODES, EnsembleGenerator
from genopt.ensemble.mixture import greedy_mixture, mixture_statistics
from genopt.errors import GenoptError
from genopt.metrics import FidEvaluator
from genopt.models import Generator, GeneratorConfig
from genopt.objective import CHECKPOINT_FORMAT, EVAL_NOISE_SEED
from genopt.storage import artifact_store, load_existing_study
from genopt.study import kept_checkpoints

# Seeds the mean ensemble's draws for its FID, apart from the members' evaluation noise.
ENSEMBLE_NOISE_SEED = 54321


@dataclass(frozen=True)
class Member:
    """One of the study's best trials, rebuilt from its stored checkpoint."""

    trial_number: int
    fid_validation: float
    generator: Generator


@dataclass
class EnsembleBuild:
    """What ``build_ensemble`` chose and measured.

    Attributes:
        ensemble: the chosen mode's ensemble, on the CPU.
        members: the top-k candidates, best first.
        scores: ``{"best_single" | "mean" | "mixture": {"validation": FID, "test": FID}}``.
        mixture_weights: the greedy weights, one per candidate (zeros included).
        chosen: the members of ``ensemble``, in its order.
        metadata: plain values for the checkpoint: study, dataset, model kind, sample budget, ...
    """

    ensemble: EnsembleGenerator
    members: list[Member]
    scores: dict[str, dict[str, float]]
    mixture_weights: list[float]
    chosen: list[Member]
    metadata: dict[str, Any] = field(default_factory=dict)


def load_members(study: optuna.Study, *, top_k: int) -> list[Member]:
    """The ``top_k`` COMPLETE trials with a stored checkpoint, lowest validation FID first.

    Raises:
        GenoptError: no COMPLETE trial has a stored checkpoint, or a checkpoint is not a generator's.
    """
    store = artifact_store()
    kept = kept_checkpoints(study, store)
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    ranked = sorted(kept, key=lambda number: (trials[number].value, number))[:top_k]
    if not ranked:
        raise GenoptError(
            f"study {study.study_name!r} has no COMPLETE trial with a stored checkpoint: "
            "run `genopt study` until one completes"
        )
    members = []
    for number in ranked:
        with store.open_reader(kept[number]) as f:
            try:
                checkpoint = torch.load(f, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise GenoptError(f"trial {number}'s checkpoint cannot be read safely: {exc}") from None
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise GenoptError(f"trial {number}'s checkpoint is not a {CHECKPOINT_FORMAT} file")
        generator = Generator(GeneratorConfig.from_dict(checkpoint["generator_config"]))
        generator.load_state_dict(checkpoint["state_dict"])
        members.append(Member(number, float(trials[number].value), generator.requires_grad_(False).eval()))
    return members


def _statistics(evaluator: FidEvaluator, sample, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        return evaluator.statistics(sample, n)
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
) -> EnsembleBuild:
    """Combine the study's ``top_k`` best generators, score best single / mean / mixture, choose.

    Args:
        study_name: a study in the storage, with COMPLETE trials whose checkpoints are kept.
        top_k: how many of the best trials are candidates, at least 1.
        mode: ``mean``, ``mixture``, or ``auto`` (the one with the lower validation FID).
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        fid_samples: generated images per FID; default the study's own budget.
        rounds: rounds of greedy mixture selection.

    Raises:
        GenoptError: bad input, a missing study, no usable checkpoint, or other data than the study's.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise GenoptError(f"--top-k must be a positive integer, got {top_k!r}")
    if mode not in (*MODES, "auto"):
        raise GenoptError(f"mode must be auto, mean or mixture, got {mode!r}")
    if fid_samples is not None and fid_samples < 2:
        raise GenoptError(f"--fid-samples must be at least 2, got {fid_samples}")
    study = load_existing_study(study_name, storage_url)
    members = load_members(study, top_k=top_k)
    info = study.user_attrs.get("dataset", {})
    spec = study.user_attrs.get("spec", {})
    dataset = load_dataset(info.get("name", "mnist"))
    if info.get("sha256") not in (None, dataset.sha256):
        raise GenoptError(f"study {study_name!r} was made on other data than {dataset.source}")
    n = fid_samples or int(spec.get("fid_samples", 10_000))

    # Scored on the device the study's trials were scored on by default (CUDA when present), with the
    # same CPU-drawn noise, so the best single member's FID is its trial's value; exported from the CPU.
    evaluator = FidEvaluator(dataset)
    for m in members:
        m.generator.to(evaluator.device)
    member_stats = []
    for m in members:
        noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        member_stats.append(_statistics(evaluator, lambda y, g=m.generator, z=noise: g.sample(y, z), n))
    val = [evaluator.fid_of_statistics(*s) for s in member_stats]
    best = min(range(len(members)), key=lambda i: (math.isnan(val[i]), val[i]))

    mean_ensemble = EnsembleGenerator([m.generator for m in members], [1.0] * len(members), mode="mean")
    mean_ensemble.to(evaluator.device)
    noise = torch.Generator().manual_seed(ENSEMBLE_NOISE_SEED)
    mean_stats = _statistics(evaluator, lambda y: mean_ensemble.sample(len(y), y, generator=noise) * 2 - 1, n)
    selection = greedy_mixture(member_stats, evaluator.fid_of_statistics, rounds=rounds)
    mix_stats = mixture_statistics(member_stats, selection.weights)

    # The test split is read here, after every choice is made.
    candidates = {"best_single": member_stats[best], "mean": mean_stats, "mixture": mix_stats}
    scores = {
        name: {
            "validation": evaluator.fid_of_statistics(*s),
            "test": evaluator.fid_of_statistics(*s, split="test"),
        }
        for name, s in candidates.items()
    }
    if mode == "auto":
        mean_val, mix_val = scores["mean"]["validation"], scores["mixture"]["validation"]
        mode = "mean" if mean_val < mix_val or math.isnan(mix_val) else "mixture"
    if mode == "mean":
        ensemble, chosen = mean_ensemble, members
    else:
        used = [i for i, w in enumerate(selection.weights) if w > 0]
        chosen = [members[i] for i in used]
        ensemble = EnsembleGenerator(
            [m.generator for m in chosen], [selection.weights[i] for i in used], mode="mixture"
        )
    kind = spec.get("model") or ("cgan" if ensemble.conditional else "gan")
    metadata = {
        "study": study_name,
        "model": kind,
        "dataset": {"name": dataset.name, "sha256": dataset.sha256},
        "top_k": top_k,
        "fid_samples": n,
        "greedy_rounds": rounds,
        "best_single_trial": members[best].trial_number,
        "candidates": [
            {"trial_number": m.trial_number, "fid_validation": m.fid_validation, "mixture_weight": w}
            for m, w in zip(members, selection.weights, strict=True)
        ],
    }
    ensemble.cpu()
    for m in members:
        m.generator.cpu()
    return EnsembleBuild(ensemble, members, scores, selection.weights, chosen, metadata)
