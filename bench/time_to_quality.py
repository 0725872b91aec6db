"""Time to quality: the minutes a study takes to hold a generator near real images: for a cGAN, one
that draws the requested class as reliably as real images are classified, with intra-FID near the
floor; for a GAN (``--model gan``), one whose FID is near the floor and whose class balance is real.

For each candidate spec and seed it runs what a user runs, ``genopt study`` and then ``genopt
ensemble`` through the console script (on this machine's CPU cores, or its GPU when there is one),
the study stopped at ``--trials`` or at ``--budget`` minutes, whichever comes first. The clock
starts when the command is launched, so start-up counts. After every finished trial it takes the
best trial so far (by the study's objective) and checks the quality bar. A cGAN's:

- its label accuracy, by genopt's feature network, is at least that network's own accuracy on
  validation images minus 1 point, and
- its intra-FID is at most 3x the intra-FID floor (the test split against validation).

A GAN's: its FID is at most 3x the FID floor, and its class coverage (``1 - TV`` of the classes
genopt's feature network sees in its samples and in the validation split) at least 0.97.

Per candidate and seed it prints the minutes to the bar (``inf`` when the budget ran out first),
the best trial, and the exported ensemble's validation and test scores; ``--grids DIR`` keeps each
export's sample grid. Candidates: ``default`` (``studies/cgan.toml`` or ``studies/gan.toml`` as shipped),
``article`` (their ``-article`` twins, the article's MLPs), ``kind-choice`` (the default with ``kind``
searched between ``mlp`` and ``dcgan``), or a path to any spec. ``--dataset fashion-mnist`` runs them
on Fashion-MNIST (the bar from its own feature network and floors).

Headlines, the last lines, for the shipped default over its seeds: ``ttq_minutes`` (the slowest
seed's minutes to the bar) and the worst seed's export after a study of B minutes (``--budget``, 30
by default). A cGAN's: ``ttq_label_accuracy`` (the lowest exported validation label accuracy) and
``ttq_label_accuracy_B`` (the lowest on the *test* split). A GAN's, all on the test split:
``ttq_fid_B`` (the highest FID), ``ttq_class_coverage_B`` (the lowest coverage) and
``ttq_unsure_share_B`` (the highest share of samples genopt's network is unsure of: top class
probability under 0.9). A seed whose export failed makes them ``nan``, never another seed's
figure. Only trials that started after the launch count: a ``--keep`` folder that already holds a
study is refused. ``--quick`` checks the yardstick end to end in a few minutes: 2 one-epoch trials
on 4,096 training images, 1,000 samples a score; its bar is not expected to be met.

Each export is also judged by a classifier of another design (``bench/second_classifier.py``,
trained on the train split only): its label accuracy (a cGAN's) and unsure share over 10,000
samples, and the headline ``ttq_second_label_accuracy_B`` (cGAN; the lowest over the seeds), or for
a GAN its coverage, unsure share and FID in its own features on the test split, worst seed:
``ttq_second_class_coverage_B``, ``ttq_second_unsure_share_B``, ``ttq_second_fid_B``. A GAN export
made with rejection sampling (``genopt ensemble --rejection``) is scored as it samples, filtered.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from bench import harness, second_classifier
from genopt.metrics import FidEvaluator
from genopt.metrics.scores import SCORES
from genopt.study.artifacts.feature_net import study_network
from genopt.study.record.facts import study_artifact_location, study_dataset
from genopt.study.record.records import StudyRecord, TrialRecord

STUDIES = harness.ROOT / "studies"
LABEL_ACCURACY_MARGIN = 0.01  # a cGAN's bar: the feature net's own validation accuracy minus 1 point
INTRA_FID_FACTOR = 3.0  # ... and intra-FID within 3x the floor
FID_FACTOR = 3.0  # a GAN's bar: FID within 3x the floor
LEAST_COVERAGE = 0.97  # ... and class coverage at least this
GENOPT = Path(sys.executable).parent / "genopt"


def shipped(model: str) -> Path:
    return STUDIES / f"{model}.toml"


@dataclass(frozen=True)
class Bar:
    """The quality bar: each score in ``at_least`` at least its value, each in ``at_most`` at most."""

    at_least: dict[str, float]
    at_most: dict[str, float]

    @property
    def scores(self) -> list[str]:
        return [*self.at_least, *self.at_most]

    def met(self, scores: dict[str, float]) -> bool:
        return all(scores[k] >= v for k, v in self.at_least.items()) and all(
            scores[k] <= v for k, v in self.at_most.items()
        )

    def text(self) -> str:
        return " and ".join(
            [f"{k} >= {v:.4f}" for k, v in self.at_least.items()]
            + [f"{k} <= {v:.2f}" for k, v in self.at_most.items()]
        )


@dataclass
class Point:
    """One finished trial: minutes since launch, the best trial so far and its bar scores."""

    minutes: float
    trial: int
    best_trial: int
    scores: dict[str, float]
    met: bool


@dataclass
class Run:
    candidate: str
    seed: int
    points: list[Point] = field(default_factory=list)
    minutes: float = 0.0  # the study command's wall time
    stopped: str = "trials"  # or "budget"
    export: dict = field(default_factory=dict)  # the export's JSON
    # the export's label accuracy and unsure share by the second classifier (NaN: not judged)
    second: tuple[float, ...] = (math.nan, math.nan, math.nan)
    bar: Bar | None = None

    @property
    def ttq(self) -> float:
        return next((p.minutes for p in self.points if p.met), math.inf)


def spec_file(candidate: str, model: str, folder: Path) -> Path:
    """The spec a candidate runs: a shipped file, a path, or ``kind-choice`` written into ``folder``."""
    if candidate == "kind-choice":
        path = folder / f"{model}-kind-choice.toml"
        path.write_text(shipped(model).read_text() + '\n[search.params.kind]\nchoices = ["mlp", "dcgan"]\n')
        return path
    named = {"default": shipped(model), "article": STUDIES / f"{model}-article.toml"}
    path = named.get(candidate) or Path(candidate)
    if not path.is_file():
        sys.exit(f"time_to_quality: no spec {path} for candidate {candidate!r}")
    return path


def bar(study: optuna.Study, model: str) -> Bar:
    """The quality bar of a ``model`` study, by its feature network."""
    dataset = study_dataset(study)
    net = study_network(study, dataset, study_artifact_location(study), device="cpu")
    evaluator = FidEvaluator(dataset, device="cpu", feature_net=net)
    if model == "gan":
        return Bar({"class_coverage": LEAST_COVERAGE}, {"fid": FID_FACTOR * evaluator.floor()})
    accuracy = StudyRecord.of(study).feature_accuracy
    return Bar(
        {"label_accuracy": accuracy - LABEL_ACCURACY_MARGIN},
        {"intra_fid": INTRA_FID_FACTOR * evaluator.intra_floor()},
    )


def points(study: optuna.Study, launched: datetime.datetime, quality: Bar) -> list[Point]:
    """The trials started since ``launched`` that finished, in the order they finished, each with
    the best of them so far and whether that one meets the bar. Trials from before the launch (a
    resumed study) never count, neither as points nor as the best."""
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    done = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if t.state.is_finished() and t.datetime_complete and t.datetime_start >= launched
        ),
        key=lambda t: t.datetime_complete,
    )
    out, best = [], None
    for t in done:
        scored = t.state == optuna.trial.TrialState.COMPLETE and set(quality.scores) <= set(
            TrialRecord.of(t).scores
        )
        if scored and (best is None or sign * t.value < sign * best.value):
            best = t
        if best is None:
            continue
        scores = {k: TrialRecord.of(best).scores[k] for k in quality.scores}
        minutes = (t.datetime_complete - launched).total_seconds() / 60
        out.append(Point(minutes, t.number, best.number, scores, quality.met(scores)))
    return out


def run_one(candidate: str, seed: int, args, folder: Path) -> Run:
    """One study of ``candidate`` at ``seed``, stopped at the trials or the budget, then its export."""
    name = f"ttq-{args.model}-{args.dataset}-{Path(candidate).stem}-s{seed}"
    storage = f"sqlite:///{folder / 'ttq.db'}"
    common = ["--storage", storage, "--artifact-dir", str(folder / "artifacts")]
    command = [
        str(GENOPT),
        "study",
        "--model",
        args.model,
        "--spec",
        str(spec_file(candidate, args.model, folder)),
    ]
    command += ["--study", name, "--dataset", args.dataset, "--trials", str(args.trials), "--seed", str(seed)]
    command += common
    if args.quick:
        command += ["--epochs", "1", "--train-limit", "4096", "--fid-samples", "1000"]
    if (folder / "ttq.db").exists() and name in optuna.get_all_study_names(storage):
        sys.exit(f"time_to_quality: {folder} already holds the study {name}; give an empty --keep folder")
    run = Run(candidate, seed)
    log = (folder / f"{name}.log").open("w")
    launched = datetime.datetime.now()
    # The budget is genopt's own, as `make study BUDGET=30m` gives it: no trial starts after it, and
    # the running one stops there keeping its best epoch. The wait's margin is for that last epoch's
    # scoring and upload; past it the study is killed.
    command += ["--timeout", f"{round(args.budget * 60)}s"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        process.wait(timeout=args.budget * 60 + 300)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    run.minutes = (datetime.datetime.now() - launched).total_seconds() / 60
    log.close()
    if process.returncode != 0:
        sys.exit(f"time_to_quality: {' '.join(command)} failed; see {log.name}")
    study = optuna.load_study(study_name=name, storage=storage)
    if (StudyRecord.of(study).stopped or "").startswith("stopped by the time budget"):
        run.stopped = "budget"
    run.bar = bar(study, args.model)
    # the trial the stop cut short completes after the budget: a point past it, left out
    run.points = [p for p in points(study, launched, run.bar) if p.minutes <= args.budget]
    out = folder / f"{name}.pt"
    ensemble = [str(GENOPT), "ensemble", "--study", name, "--out", str(out), *common]
    if args.quick:
        ensemble += ["--fid-samples", "1000"]
    done = subprocess.run(ensemble, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{name}: genopt ensemble failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return run
    run.export = json.loads(out.with_suffix(".json").read_text())
    if args.second_classifier:
        net = second_classifier.classifier(study_dataset(study))
        run.second = second_classifier.judge_export(net, out, 1000 if args.quick else 10_000, seed=seed)
    if args.grids is not None:
        args.grids.mkdir(parents=True, exist_ok=True)
        grid = args.grids / f"ttq_{args.model}_{args.dataset}_{Path(candidate).stem}_s{seed}.png"
        subprocess.run(
            [str(GENOPT), "sample", "--checkpoint", str(out), "--n", "100", "--out", str(grid)], check=True
        )
    return run


def exported(run: Run, split: str, score: str) -> float:
    """A score of the exported generator (the mode ``genopt ensemble`` chose, through its rejection
    filter when it has one) on ``split``."""
    if not run.export:
        return math.nan
    kind = "rejection" if "rejection" in run.export["scores"] else run.export["mode"]
    return run.export["scores"][kind][split].get(score, math.nan)


def worst_of(values: list[float], worst=min) -> float:
    """``worst(values)`` (``min`` or ``max``); NaN when any is NaN (a failed export), where ``min`` and
    ``max`` would skip it."""
    return math.nan if any(math.isnan(v) for v in values) else worst(values, default=math.nan)


def export_columns(run: Run, model: str) -> list[str]:
    """The export's validation and test scores and the second classifier's reading, as table cells."""
    if model == "gan":
        cells = [
            f"{exported(run, split, 'fid'):.2f} / {exported(run, split, 'class_coverage'):.3f} / "
            f"{exported(run, split, 'unsure_share'):.3f}"
            for split in ("validation", "test")
        ]
        return [*cells, f"{run.second[0]:.3f} / {run.second[1]:.3f} / {run.second[2]:.2f}"]
    return [
        f"{exported(run, 'validation', 'label_accuracy'):.4f} / "
        f"{exported(run, 'validation', 'intra_fid'):.2f}",
        f"{exported(run, 'test', 'label_accuracy'):.4f} / {exported(run, 'test', 'fid'):.2f}",
        f"{run.second[0]:.4f} / {run.second[1]:.4f}",
    ]


EXPORT_HEADS = {
    "gan": [
        "export val FID / coverage / unsure",
        "export test FID / coverage / unsure",
        "export test coverage / unsure / FID, second classifier",
    ],
    "cgan": [
        "export val label acc / intra-FID",
        "export test label acc / FID",
        "export label acc / unsure, second classifier",
    ],
}


def headlines(report: harness.Report, runs: list[Run], args) -> None:
    """The shipped default's headlines: minutes to the bar, and each export score's worst seed."""
    report.headline("ttq_minutes", max(r.ttq for r in runs), "{:.1f}")
    after = f"_{args.budget:g}"  # the test split after a study of --budget minutes
    if args.model == "gan":
        for name in ("fid", "class_coverage", "unsure_share"):
            worst = max if SCORES[name].direction == "minimize" else min
            fmt = "{:.4f}" if SCORES[name].rate else "{:.2f}"
            report.headline(
                f"ttq_{name}{after}", worst_of([exported(r, "test", name) for r in runs], worst), fmt
            )
        if args.second_classifier:
            for i, name in enumerate(("class_coverage", "unsure_share", "fid")):
                worst = max if SCORES[name].direction == "minimize" else min
                fmt = "{:.4f}" if SCORES[name].rate else "{:.2f}"
                report.headline(
                    f"ttq_second_{name}{after}", worst_of([r.second[i] for r in runs], worst), fmt
                )
        return
    for name, split in (("ttq_label_accuracy", "validation"), (f"ttq_label_accuracy{after}", "test")):
        report.headline(name, worst_of([exported(r, split, "label_accuracy") for r in runs], min), "{:.4f}")
    if args.second_classifier:
        report.headline(
            f"ttq_second_label_accuracy{after}", worst_of([r.second[0] for r in runs], min), "{:.4f}"
        )


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument(
        "--candidates", default="default,article,kind-choice", help="comma-separated names or spec paths"
    )
    p.add_argument("--model", choices=("cgan", "gan"), default="cgan", help="cgan (default) or gan")
    p.add_argument(
        "--dataset",
        choices=("mnist", "fashion-mnist"),
        default="mnist",
        help="mnist (default) or fashion-mnist",
    )
    p.add_argument("--seeds", default="0,1", help="comma-separated study seeds (default 0,1)")
    p.add_argument("--trials", type=int, default=20, help="trials per study (default 20)")
    p.add_argument("--budget", type=float, default=30.0, help="minutes per study at most (default 30)")
    p.add_argument("--grids", type=Path, help="write each export's sample grid into this folder")
    p.add_argument("--keep", type=Path, help="keep the studies and exports in this folder")
    p.add_argument(
        "--second-classifier",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="judge each export by bench/second_classifier.py too (default: on, off with --quick)",
    )
    args = p.parse_args()
    if args.quick:
        args.trials, args.budget, args.seeds = 2, 6.0, "0"
    if args.second_classifier is None:
        args.second_classifier = not args.quick
    title = "a cGAN as faithful as real images" if args.model == "cgan" else "a GAN near real images"
    report = harness.Report(f"Time to quality: minutes to {title}", args)
    if args.threads is not None:
        # the studies run in their own processes: torch reads this when it starts
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    runs: list[Run] = []
    for candidate in candidates:
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory(prefix="genopt-ttq-") as tmp:
                folder = args.keep / f"{Path(candidate).stem}-s{seed}" if args.keep else Path(tmp)
                folder.mkdir(parents=True, exist_ok=True)
                run = run_one(candidate, seed, args, folder)
            runs.append(run)
            print(
                f"{candidate} seed {seed}: ttq {run.ttq:.1f} min, "
                f"{len(run.points)} trials in {run.minutes:.1f} min",
                flush=True,
            )

    report.add(
        f"Each study: `genopt study --model {args.model} --spec SPEC --dataset {args.dataset} "
        f"--trials {args.trials} --seed S`, "
        f"stopped at {args.budget:g} minutes if still running, then `genopt ensemble` (top 5, mode auto). "
        "The bar, met by the best trial so far: "
        + (
            "label accuracy >= the feature net's validation accuracy - "
            f"{LABEL_ACCURACY_MARGIN:.2f} and intra-FID <= {INTRA_FID_FACTOR:g}x the intra-FID floor."
            if args.model == "cgan"
            else f"FID <= {FID_FACTOR:g}x the FID floor and class coverage >= {LEAST_COVERAGE}."
        )
        + (" Quick: 2 trials of 1 epoch on 4,096 images, 1,000 samples a score." if args.quick else ""),
        "",
    )
    bars = sorted({r.bar.text() for r in runs if r.bar is not None})
    report.add("Here the bar is " + "; ".join(bars) + ".", "")
    rows = []
    for r in runs:
        last = r.points[-1] if r.points else None
        best = (
            " / ".join(f"{v:.4f}" if SCORES[k].rate else f"{v:.2f}" for k, v in last.scores.items())
            if last
            else ""
        )
        rows.append(
            [
                r.candidate,
                r.seed,
                "inf" if math.isinf(r.ttq) else f"{r.ttq:.1f}",
                f"{len(r.points)} ({r.stopped})",
                f"{r.minutes:.1f}",
                f"{last.best_trial}: {best}" if last else "-",
                *export_columns(r, args.model),
            ]
        )
    bar_scores = runs[0].bar.scores if runs and runs[0].bar else []
    report.table(
        [
            "candidate",
            "seed",
            "ttq minutes",
            "trials finished",
            "study minutes",
            "best trial: " + " / ".join(SCORES[k].label for k in bar_scores),
            *EXPORT_HEADS[args.model],
        ],
        rows,
    )
    default = [r for r in runs if r.candidate in ("default", str(shipped(args.model)))]
    if default:
        headlines(report, default, args)
    else:
        report.skip("the headlines", "they are the shipped default's, and it was not among the candidates")
    report.finish()


if __name__ == "__main__":
    main()
