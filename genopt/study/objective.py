"""The Optuna objective: choose parameters, train, score every epoch, keep the best epoch.

Choosing (``suggest``) and building (``StudySpec.run_config``) stay apart, so the best generator
can be rebuilt from a trial's stored parameters alone.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from genopt.data import Dataset
from genopt.files import hold_while_exists
from genopt.metrics import EVAL_NOISE_SEED, FidEvaluator, Scores
from genopt.metrics.scores import SCORES
from genopt.models import Generator
from genopt.spec import SEARCHABLE, StudySpec
from genopt.study.artifacts.upload import upload_checkpoint, upload_trial_artifacts
from genopt.study.record import attrs as A
from genopt.study.search.pruners import completes_stops
from genopt.study.stop import Stop, Stopped
from genopt.train import EpochStats, train
from genopt.warmstart import WarmStart

# The constraint's name among the trial's constraints (feasible when its value is <= 0).
LABEL_ACCURACY_CONSTRAINT = "min_label_accuracy"


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """The parameters this trial tries, one per entry of the spec's search space."""
    params: dict[str, Any] = {}
    for p in spec.params:
        if p.choices is not None:
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif SEARCHABLE[p.name] is int:
            params[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def trial_seed(spec: StudySpec, number: int) -> int:
    """Each trial's own training seed, recorded with it: same study seed and number, same run."""
    return spec.seed * 1_000_003 + number


def evaluate_generator(
    evaluator: FidEvaluator, generator: Generator, n: int, *, stop: Stop | None = None
) -> Scores:
    """Every score of ``generator`` on n samples drawn from the fixed evaluation noise.

    Raises:
        Stopped: ``stop`` asked for a stop before a batch was drawn (scoring 10,000 samples takes
            longer than a stop may wait).
    """
    noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # CPU noise: the same on every device

    def draw(labels: torch.Tensor) -> torch.Tensor:
        reason = stop() if stop is not None else None
        if reason:
            raise Stopped(reason)
        return generator.sample(labels, generator=noise)

    return evaluator.evaluate(draw, n, conditional=generator.config.num_classes > 0)


@dataclass
class Chosen:
    """The epoch a trial is scored by, with a copy of that epoch's generator (when one was given)."""

    epoch: int
    value: float
    scores: Scores
    state: dict[str, torch.Tensor] | None


class EpochJudge:
    """One trial's epochs as the study sees them: report each, keep the chosen one, ask the pruner.

    The same judge serves real training (``Objective``) and replays of a learning-curve table
    (``bench/replay.py``), so a replayed search prunes exactly as a real one would.
    """

    def __init__(self, trial: optuna.Trial, spec: StudySpec, epochs: int, *, baseline: bool = False):
        self.trial = trial
        self.spec = spec
        self.epochs = epochs
        self.baseline = baseline
        self.chosen: Chosen | None = None
        # The study's pruner stopped the trial and completes such trials with the chosen epoch's
        # score rather than ending them as PRUNED (``search.pruners.completes_stops``).
        self.stopped_early = False

    def __call__(
        self, epoch: int, scores: Scores, state: Callable[[], dict[str, torch.Tensor]] | None = None
    ) -> str | None:
        """Judge one epoch's scores; a reason to stop the trial, or None to go on.

        Args:
            state: makes a copy of this epoch's generator weights, called only when the epoch
                becomes the chosen one.
        """
        objective = self.spec.objective_name
        value = scores.get(objective)
        if not math.isfinite(value):
            return f"non-finite validation {objective} at epoch {epoch}"
        # Training drifts: the trial keeps its best epoch's generator unless the spec says "last".
        chosen = self.chosen
        if chosen is None or self.spec.select_epoch == "last" or value < chosen.value:
            self.chosen = Chosen(epoch, value, scores, state() if state is not None else None)
        self.trial.report(value, epoch)
        # A trial that has run its whole budget is finished: pruning it would save nothing.
        last = epoch == self.epochs
        if not self.baseline and not last and self.trial.should_prune():
            if completes_stops(self.trial.study.pruner):
                self.stopped_early = True
                return f"stopped at epoch {epoch}, far behind the best trial there"
            return f"pruned at epoch {epoch}"
        return None


class Objective:
    """Callable objective for ``study.optimize``; one instance serves every trial of a run.

    A ``stop`` (a time budget, a signal) lands within one training step or one scored batch: the
    trial then completes at its best epoch so far, as a trial the behind-best pruner stopped does,
    with its checkpoint, grid and scores, and ``stop_reason`` saying so (docs/scoring.md). Cut short
    before any epoch was scored, it has nothing to keep and ends FAIL with its ``reason``.

    ``progress``, when set (``genopt.study.optimize`` sets it), is told each trial's start and every
    judged epoch: ``progress(number, epoch, epochs, best value so far)``, epoch 0 at the start.
    """

    def __init__(
        self,
        spec: StudySpec,
        dataset: Dataset,
        evaluator: FidEvaluator,
        store: optuna.artifacts.FileSystemArtifactStore,
        device: torch.device,
        init: WarmStart | None = None,
        stop: Stop | None = None,
    ):
        self.spec = spec
        self.dataset = dataset
        self.evaluator = evaluator
        self.store = store
        self.device = device
        self.init = init  # every trial's networks start from these weights where layers fit
        self.stop = stop if stop is not None else Stop()
        self.progress: Callable[[int, int, int, float | None], None] | None = None

    def scores(self, generator: Generator) -> Scores:
        """The generator's scores on the study's evaluation budget."""
        return evaluate_generator(self.evaluator, generator, self.spec.fid_samples, stop=self.stop)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Optuna records the trial as FAIL on the way out; the reason says it was Ctrl-C.
            trial.set_user_attr(A.REASON_ATTR, "interrupted")
            raise

    def _run(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        spec = self.spec
        seed = trial_seed(spec, trial.number)
        config = spec.run_config(suggest(trial, spec), seed=seed)
        _pause_for_tests(trial.number, stop=self.stop)
        judge = EpochJudge(trial, spec, config.epochs, baseline=bool(trial.user_attrs.get(A.BASELINE_ATTR)))
        history: list[dict[str, Any]] = []
        self._show(trial.number, 0, config.epochs, None)
        scoring_stopped = False

        def on_epoch(generator: Generator, stats: EpochStats) -> str | None:
            nonlocal scoring_stopped
            try:
                scores = self.scores(generator)
            except Stopped as stopped:  # the epoch trained but is not scored: it cannot be chosen
                scoring_stopped = True
                return f"{stopped} while scoring epoch {stats.epoch}"
            history.append(_history_row(stats, scores))
            verdict = judge(stats.epoch, scores, lambda: _copy_state(generator))
            self._show(trial.number, stats.epoch, config.epochs, judge.chosen.value if judge.chosen else None)
            _pause_for_tests(trial.number, epoch=stats.epoch, stop=self.stop)
            return verdict

        result = train(
            config, self.dataset, on_epoch=on_epoch, device=self.device, init=self.init, stop=self.stop
        )
        generator, chosen = result.generator, judge.chosen
        cut = result.stopped or scoring_stopped  # by the budget or a signal, not by the pruner
        if cut:
            self.stop.cut.append((trial.number, chosen.epoch if chosen is not None else None))
        if chosen is not None:
            generator = copy.deepcopy(generator)
            generator.load_state_dict(chosen.state)
        self._record(trial, seed, start, result, history, chosen)
        upload_trial_artifacts(trial, self.store, generator, history)
        if result.stop_reason is not None:
            # Divergence and pruning both end the trial as PRUNED, the reason says which; a trial
            # stopped by a pruner that completes its stops, or cut short by the budget or a signal,
            # goes on to complete with its chosen epoch.
            if cut and chosen is None:  # nothing to keep: FAIL, which no sampler learns from
                trial.set_user_attr(A.REASON_ATTR, f"{result.stop_reason}, before any epoch was scored")
                raise Stopped(result.stop_reason)
            trial.set_user_attr(A.STOP_REASON_ATTR, result.stop_reason)
            if not (judge.stopped_early or cut):
                raise optuna.TrialPruned(result.stop_reason)

        if spec.min_label_accuracy is not None:
            accuracy = chosen.scores.label_accuracy
            # Optuna 5's trial constraint (its samplers' constraints_func is deprecated): feasible <= 0.
            trial.set_constraint(LABEL_ACCURACY_CONSTRAINT, spec.min_label_accuracy - accuracy)
            if accuracy < spec.min_label_accuracy:
                trial.set_user_attr(A.INFEASIBLE_ATTR, True)
                return chosen.value  # no checkpoint: it can never become an ensemble member
        upload_checkpoint(
            trial,
            self.store,
            generator,
            run_config=dataclasses.asdict(config),
            epoch=chosen.epoch,
            scores=chosen.scores.as_dict(),
            fid_validation=chosen.scores.fid,
            trial_number=trial.number,
            study=trial.study.study_name,
            dataset=self.dataset.name,
            dataset_sha256=self.dataset.sha256,
            # The last epoch's discriminator (only the generator is copied at the chosen epoch): a
            # warm start (--init-from) takes it as the discriminator's starting point.
            discriminator=result.discriminator,
        )
        return chosen.value

    def _show(self, number: int, epoch: int, epochs: int, best: float | None) -> None:
        if self.progress is not None:
            self.progress(number, epoch, epochs, best)

    def _record(self, trial, seed, start, result, history, chosen: Chosen | None) -> None:
        trial.set_user_attr(A.SEED_ATTR, seed)
        trial.set_user_attr(A.EPOCHS_ATTR, len(result.epochs))
        trial.set_user_attr(A.WALL_SECONDS_ATTR, round(time.perf_counter() - start, 2))
        trial.set_user_attr(A.IMAGES_PER_SECOND_ATTR, round(result.images_per_second, 1))
        trial.set_user_attr(A.PRECISION_ATTR, result.precision)
        trial.set_user_attr(A.TRIAL_FEATURE_VERSION_ATTR, self.evaluator.feature_version)
        trial.set_user_attr(A.TRIAL_FEATURE_SHA256_ATTR, self.evaluator.feature_net.sha256)
        trial.set_user_attr(A.LOSS_HISTORY_ATTR, [[e.d_loss, e.g_loss] for e in result.epochs])
        for name in SCORES:
            values = [row[name] for row in history if name in row]
            if values:
                trial.set_user_attr(A.history_attr(name), values)
        if chosen is not None:
            trial.set_user_attr(A.BEST_EPOCH_ATTR, chosen.epoch)
            for name, value in chosen.scores.as_dict().items():
                trial.set_user_attr(name, value)


def _pause_for_tests(number: int, *, epoch: int = 0, stop: Stop) -> None:
    """Test hook, unset in real use: with ``GENOPT_TEST_PAUSE_TRIAL=N`` and ``GENOPT_TEST_PAUSE_FILE=PATH``
    in the environment, trial N (running, its parameters drawn, its heartbeat beating) creates PATH and
    waits while PATH exists and no stop is asked for, standing for a long training step. It waits
    before training, or with ``GENOPT_TEST_PAUSE_EPOCH=E`` once epoch E is scored and judged. A test
    kills, interrupts or stops the worker then, or removes PATH to let it go on, so a signal or a
    budget lands mid-trial without a long trial (tests/test_faults.py, tests/test_stop.py)."""
    path = os.environ.get("GENOPT_TEST_PAUSE_FILE")
    if path is None or os.environ.get("GENOPT_TEST_PAUSE_TRIAL") != str(number):
        return
    if os.environ.get("GENOPT_TEST_PAUSE_EPOCH", "0") != str(epoch):
        return
    hold_while_exists(path, released=stop)


def _copy_state(generator: Generator) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in generator.state_dict().items()}


def _history_row(stats: EpochStats, scores: Scores) -> dict[str, Any]:
    return {
        "epoch": stats.epoch,
        "d_loss": stats.d_loss,
        "g_loss": stats.g_loss,
        **scores.as_dict(),
        "seconds": stats.seconds,
    }
