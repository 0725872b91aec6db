"""The Optuna objective: choose parameters, train, score each epoch by validation FID, keep the best.

Choosing (``suggest``) and building (``StudySpec.run_config``) stay apart, so the best generator
can be rebuilt from a trial's stored parameters alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from typing import Any

import optuna
import torch

from genopt.data import Dataset
from genopt.metrics import FidEvaluator
from genopt.models import Generator
from genopt.spec import SEARCHABLE, StudySpec
from genopt.train import EpochStats, train

CHECKPOINT_FORMAT = "genopt-generator/1"
# Fixed noise for every evaluation, so epochs and trials are scored on the same draws.
EVAL_NOISE_SEED = 12345
BASELINE_ATTR = "baseline"


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """The parameters this trial tries, one per entry of the spec's search space."""
    params: dict[str, Any] = {}
    for p in spec.params:
        if p.choices is not None:
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif SEARCHABLE[p.name] is int:
            params[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return params


def trial_seed(spec: StudySpec, number: int) -> int:
    """Each trial's own training seed, recorded with it: same study seed and number, same run."""
    return spec.seed * 1_000_003 + number


def save_checkpoint(path: str, generator: Generator, **metadata: Any) -> None:
    """A generator checkpoint of tensors and plain values only (``torch.load(weights_only=True)``)."""
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    torch.save(
        {"format": CHECKPOINT_FORMAT, "generator_config": generator.config.to_dict(), "state_dict": state}
        | metadata,
        path,
    )


class Objective:
    """Callable objective for ``study.optimize``; one instance serves every trial of a run."""

    def __init__(
        self,
        spec: StudySpec,
        dataset: Dataset,
        evaluator: FidEvaluator,
        store: optuna.artifacts.FileSystemArtifactStore,
        device: torch.device,
    ):
        self.spec, self.dataset, self.evaluator, self.store, self.device = (
            spec,
            dataset,
            evaluator,
            store,
            device,
        )

    def fid(self, generator: Generator) -> float:
        noise = torch.Generator(self.device).manual_seed(EVAL_NOISE_SEED)
        return self.evaluator.score(
            lambda labels: generator.sample(labels, generator=noise), self.spec.fid_samples
        )

    def __call__(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        seed = trial_seed(self.spec, trial.number)
        config = self.spec.run_config(suggest(trial, self.spec), seed=seed)
        baseline = bool(trial.user_attrs.get(BASELINE_ATTR))
        fids: list[float] = []

        def on_epoch(generator: Generator, stats: EpochStats) -> str | None:
            fid = self.fid(generator)
            fids.append(fid)
            if not math.isfinite(fid):
                return f"non-finite validation FID at epoch {stats.epoch}"
            trial.report(fid, stats.epoch)
            # A trial that has run its whole budget is finished: pruning it would save nothing.
            last = stats.epoch == config.epochs
            if not baseline and not last and trial.should_prune():
                return f"pruned at epoch {stats.epoch}"
            return None

        result = train(config, self.dataset, on_epoch=on_epoch, device=self.device)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("epochs", len(result.epochs))
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - start, 2))
        trial.set_user_attr("images_per_second", round(result.images_per_second, 1))
        trial.set_user_attr("fid_history", fids)
        trial.set_user_attr("loss_history", [[e.d_loss, e.g_loss] for e in result.epochs])
        if result.stop_reason is not None:
            # Divergence and pruning both end the trial as PRUNED; the reason says which.
            trial.set_user_attr("stop_reason", result.stop_reason)
            raise optuna.TrialPruned(result.stop_reason)

        fid = fids[-1]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"generator-trial{trial.number}.pt")
            save_checkpoint(
                path,
                result.generator,
                run_config=dataclasses.asdict(config),
                fid_validation=fid,
                trial_number=trial.number,
                study=trial.study.study_name,
                dataset=self.dataset.name,
                dataset_sha256=self.dataset.sha256,
            )
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=self.store,
                file_path=path,
                study_or_trial=trial,
                mimetype="application/x-pytorch",
            )
        trial.set_user_attr("checkpoint", artifact_id)
        return fid
