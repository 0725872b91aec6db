"""The Optuna objective: choose parameters, train, score each epoch by validation FID, keep the best.

Choosing (``suggest``) and building (``StudySpec.run_config``) stay apart, so the best generator
can be rebuilt from a trial's stored parameters alone.
"""

from __future__ import annotations

import csv
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
from genopt.samples import save_grid
from genopt.spec import SEARCHABLE, StudySpec
from genopt.train import EpochStats, TrainResult, train

CHECKPOINT_FORMAT = "genopt-generator/1"
# Fixed noise for every evaluation, so epochs and trials are scored on the same draws.
EVAL_NOISE_SEED = 12345
BASELINE_ATTR = "baseline"
# Trial user attributes naming the trial's artifacts (ids in the study's artifact store).
SAMPLES_ATTR = "samples"
HISTORY_ATTR = "history_csv"
CHECKPOINT_ATTR = "checkpoint"
# Why a trial ended as FAIL without an error of its own (Ctrl-C).
INTERRUPTED_ATTR = "reason"


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


def write_history(path: str, result: TrainResult, fids: list[float]) -> None:
    """Per-epoch losses and validation FID as CSV (a diverged last epoch has no FID)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "d_loss", "g_loss", "fid_validation", "seconds"])
        for i, e in enumerate(result.epochs):
            fid = f"{fids[i]:.4f}" if i < len(fids) else ""
            writer.writerow([e.epoch, f"{e.d_loss:.5f}", f"{e.g_loss:.5f}", fid, f"{e.seconds:.2f}"])


def upload_trial_artifacts(
    trial: optuna.Trial, store, result: TrainResult, fids: list[float]
) -> dict[str, str]:
    """Upload the trial's sample grid (PNG) and history (CSV); name them in its user attributes."""
    ids = {}
    with tempfile.TemporaryDirectory() as tmp:
        grid = save_grid(result.generator, os.path.join(tmp, f"samples-trial{trial.number}.png"))
        history = os.path.join(tmp, f"history-trial{trial.number}.csv")
        write_history(history, result, fids)
        for attr, path, mimetype in ((SAMPLES_ATTR, grid, "image/png"), (HISTORY_ATTR, history, "text/csv")):
            ids[attr] = optuna.artifacts.upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype=mimetype
            )
            trial.set_user_attr(attr, ids[attr])
    return ids


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
        self.spec = spec
        self.dataset = dataset
        self.evaluator = evaluator
        self.store = store
        self.device = device

    def fid(self, generator: Generator) -> float:
        noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # CPU noise: the same on every device
        return self.evaluator.score(
            lambda labels: generator.sample(labels, generator=noise), self.spec.fid_samples
        )

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Optuna records the trial as FAIL on the way out; the reason says it was Ctrl-C.
            trial.set_user_attr(INTERRUPTED_ATTR, "interrupted")
            raise

    def _run(self, trial: optuna.Trial) -> float:
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
        upload_trial_artifacts(trial, self.store, result, fids)
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
        trial.set_user_attr(CHECKPOINT_ATTR, artifact_id)
        return fid
