"""The article's other strategies, each against its baseline: warm starts, augmentation, a DCGAN.

``--which warm``: a cGAN trained on MNIST digits 5-9 (relabelled 0-4, so every layer transfers)
starts a study on digits 0-4 limited to 2,000 training images, against the same study started
cold; per epoch, the FID and label accuracy of each study's best trial, over seeds. Both IDX
folders are built from MNIST here, and the warm study runs as ``genopt study --init-from`` does.

``--which augment``: ``none``, ``article`` and ``diffaugment`` at 1,000, 5,000 and 50,000 training
images, in the learning-curve table's setting at a configuration that learns within it
(``curves.SETTING``, ``curves.LEARNING_CONFIG``), trained for the same number of images seen at
every size (so small sets run many epochs, where a discriminator overfits), over seeds: the best
FID and the label accuracy at it.

``--which arch``: the MLPs against the DCGAN, each in a short study over the learning rate: the best
FID reached against the wall seconds spent, over seeds.

``--jobs N`` runs the trainings (or studies) side by side in N spawned processes, as a GPU or spare
cores allow; wall seconds are then those of a shared device.

Each prints a markdown section (docs/strategies.md's tables) and ends with one ``name=value`` line.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import _common
import optuna
import torch
from curves import LEARNING_CONFIG, SETTING

from genopt.data import Dataset, load_dataset
from genopt.data.idx import IDX_NAMES, write_idx
from genopt.metrics import FidEvaluator
from genopt.spec import Param, StudySpec
from genopt.study.artifacts import SAMPLES_ATTR, save_checkpoint
from genopt.study.objective import evaluate_generator
from genopt.study.progress import best_trial
from genopt.study.runner import run_study
from genopt.train import train

# The shipped cGAN (concat, EMA 0.999) at a learning rate the default search finds (FACTS.md).
CGAN = StudySpec(model="cgan", lr=1.5e-3, batch_size=64, noise_dim=100, pruner="none")
LR_SEARCH = (Param("lr", low=3e-4, high=5e-3, log=True),)
FORMATS = ("{:.1f}", "{:.3f}", "{:.0f}")  # best FID, label accuracy, seconds


def digits_folder(mnist: Dataset, digits: range, folder: Path) -> Path:
    """The MNIST images of ``digits`` as an IDX folder, labels counted from 0 (5-9 -> 0-4)."""
    images = torch.cat([mnist.train.images, mnist.validation.images]).squeeze(1)
    labels = torch.cat([mnist.train.labels, mnist.validation.labels])
    test_images, test_labels = mnist.test.images.squeeze(1), mnist.test.labels
    keep = (labels >= digits.start) & (labels < digits.stop)
    test_keep = (test_labels >= digits.start) & (test_labels < digits.stop)
    arrays = (
        images[keep],
        labels[keep] - digits.start,
        test_images[test_keep],
        test_labels[test_keep] - digits.start,
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(folder / name, array.numpy())
    return folder


def _study(spec: StudySpec, name: str, work: Path, trials: int, **kwargs) -> optuna.Study:
    storage = f"sqlite:///{work / f'{name}.db'}"  # one file per study: jobs run side by side
    folder = work / "artifacts"
    result = run_study(
        spec,
        trials=trials,
        study_name=name,
        storage_url=storage,
        artifact_dir=folder,
        progress=False,
        **kwargs,
    )
    return result.study


def _init_job(threads: int | None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if threads is not None:
        torch.set_num_threads(threads)


def run_jobs(fn, items: list, jobs: int, threads: int | None) -> list:
    """``[fn(item) for item in items]``, in ``jobs`` spawned processes side by side when ``jobs`` > 1
    (a GPU runs several small trainings at once; so does a CPU with cores to spare)."""
    if jobs <= 1:
        return [fn(item) for item in items]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_job, initargs=(threads,)) as pool:
        return list(pool.map(fn, items))


@functools.cache
def _mnist() -> Dataset:
    return load_dataset("mnist")


@functools.cache
def _mnist_evaluator() -> FidEvaluator:
    """One evaluator per process: the feature network and the validation statistics, loaded once."""
    return FidEvaluator(_mnist())


def _per_epoch(values: list[list[float]], epochs: int, fmt: str) -> list[str]:
    return [_common.median_range([v[e] for v in values if len(v) > e], fmt) for e in range(epochs)]


# -- warm start ---------------------------------------------------------------------------------


def _warm_job(item) -> tuple[float, list[float], list[float]]:
    """One study on digits 0-4, cold or warm: its best trial's lr and per-epoch FID and label accuracy."""
    target, seed, start_from, work, trials, target_dir, checkpoint = item
    spec = dataclasses.replace(target, seed=seed)
    init = {"init_from": checkpoint} if start_from == "warm" else {}
    study = _study(spec, f"warm-{start_from}-s{seed}", work, trials, data_dir=target_dir, **init)
    best = best_trial(study)
    return best.params["lr"], best.user_attrs["fid_history"], best.user_attrs["label_accuracy_history"]


def warm(args, work: Path) -> tuple[list[str], str]:
    mnist = load_dataset("mnist")
    source = load_dataset("digits59", data_dir=digits_folder(mnist, range(5, 10), work / "digits59"))
    target_dir = digits_folder(mnist, range(0, 5), work / "digits04")
    epochs, trials = (2, 2) if args.quick else (10, 8)
    source_epochs, source_limit = (1, 2_000) if args.quick else (10, None)
    samples = 1_000 if args.quick else 5_000

    start = time.perf_counter()
    source_spec = dataclasses.replace(
        CGAN, dataset="digits59", max_epochs=source_epochs, train_limit=source_limit
    )
    trained = train(source_spec.run_config({}, seed=0), source)
    checkpoint = work / "digits59.pt"
    save_checkpoint(str(checkpoint), trained.generator, discriminator=trained.discriminator)
    source_seconds = time.perf_counter() - start

    # The digits 0-4 feature network, built (and cached on disk) here once rather than by every job.
    FidEvaluator(load_dataset("digits04", data_dir=target_dir))
    target = dataclasses.replace(
        CGAN, dataset="digits04", max_epochs=epochs, train_limit=2_000, fid_samples=samples, params=LR_SEARCH
    )
    items = [(target, seed, start_from, work, trials, target_dir, checkpoint)
             for seed in range(args.seeds) for start_from in ("cold", "warm")]  # fmt: skip
    curves: dict[str, dict[str, list[list[float]]]] = {}
    rows = []
    for (_, seed, start_from, *_), (lr, fid, accuracy) in zip(
        items, run_jobs(_warm_job, items, args.jobs, args.threads), strict=True
    ):
        curves.setdefault(start_from, {"fid": [], "acc": []})
        curves[start_from]["fid"].append(fid)
        curves[start_from]["acc"].append(accuracy)
        rows.append(
            [
                start_from,
                seed,
                f"{lr:.2g}",
                *(f"{f:.1f} / {a:.2f}" for f, a in zip(fid, accuracy, strict=True)),
            ]
        )
    head = ["start", "seed", "best lr", *(f"epoch {e + 1}" for e in range(epochs))]
    summary = [
        [
            start_from,
            *(
                f"{f} / {a}"
                for f, a in zip(
                    _per_epoch(c["fid"], epochs, "{:.1f}"),
                    _per_epoch(c["acc"], epochs, "{:.2f}"),
                    strict=True,
                )
            ),
        ]
        for start_from, c in curves.items()
    ]
    lines = _common.header("Warm start: digits 5-9 to digits 0-4")
    lines += [
        f"Source: cGAN (concat, EMA 0.999, lr 1.5e-3, batch 64, noise 100) trained {source_epochs} "
        f"epoch(s) on {source_limit or len(source.train):,} images of digits 5-9 (relabelled 0-4) in "
        f"{source_seconds:.0f} s. Target: a study of {trials} trials over lr (log 3e-4..5e-3, no pruning), "
        f"{epochs} epochs on 2,000 images of digits 0-4, {samples:,}-sample scores against their "
        f"validation split; {args.seeds} seed(s).",
        "",
        "Best trial's validation FID / label accuracy per epoch, median (range) over seeds:",
        "",
        *_common.table(["start", *head[3:]], summary),
        "",
        "Every seed:",
        "",
        *_common.table(head, rows),
    ]
    final = {k: statistics.median(min(f) for f in c["fid"]) for k, c in curves.items()}
    return lines, f"warm_over_cold_best_fid={final['warm'] / final['cold']:.3f}"


# -- augmentation -------------------------------------------------------------------------------


def _augment_job(item) -> tuple[float, float, float]:
    """One run at one size and augmentation: the best FID of its evaluations, the label accuracy at
    it, and its wall seconds."""
    n, name, seed, epochs, every, samples = item
    mnist, evaluator = _mnist(), _mnist_evaluator()
    spec = dataclasses.replace(SETTING, train_limit=n, max_epochs=epochs, augment=name)
    scores = []

    def on_epoch(generator, stats):
        if stats.epoch % every == 0 or stats.epoch == epochs:
            scores.append(evaluate_generator(evaluator, generator, samples))

    start = time.perf_counter()
    train(spec.run_config(LEARNING_CONFIG, seed=seed), mnist, on_epoch=on_epoch)
    best = min(scores, key=lambda s: s.fid)
    return best.fid, best.label_accuracy, time.perf_counter() - start


def augment(args, work: Path) -> tuple[list[str], str]:
    _mnist_evaluator()  # built (and cached on disk) here once rather than by every job
    sizes = (500, 2_000) if args.quick else (1_000, 5_000, 50_000)
    seen = 8_000 if args.quick else args.seen  # training images seen per run, whatever the set's size
    evaluations = 2 if args.quick else 10
    samples = 1_000 if args.quick else 5_000
    items = [
        (n, name, seed, max(1, seen // n), max(1, max(1, seen // n) // evaluations), samples)
        for n in sizes
        for name in ("none", "article", "diffaugment")
        for seed in range(args.seeds)
    ]
    results: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    for (n, name, *_), result in zip(
        items, run_jobs(_augment_job, items, args.jobs, args.threads), strict=True
    ):
        results.setdefault((n, name), []).append(result)
    rows = [
        [f"{n:,}", name, *(_common.median_range([r[i] for r in runs], f) for i, f in enumerate(FORMATS))]
        for (n, name), runs in results.items()
    ]
    lines = _common.header("Augmentation: none, the article's, DiffAugment")
    lines += [
        f"cGAN in the learning-curve table's setting (MLPs G {SETTING.generator_widths}, D "
        f"{SETTING.discriminator_widths}, EMA {SETTING.ema_decay}, precision {SETTING.precision}) at "
        f"lr {LEARNING_CONFIG['lr']:g}, batch {LEARNING_CONFIG['batch_size']}, noise "
        f"{LEARNING_CONFIG['noise_dim']}; {seen:,} training images seen per run "
        f"(epochs = {seen:,} / size), scored {evaluations} times per run on {samples:,} samples against the "
        f"validation split; {args.seeds} seed(s). Best FID of the run and the label accuracy at it, "
        "median (range):",
        "",
        *_common.table(["training images", "augment", "best FID", "label accuracy", "seconds"], rows),
    ]
    small = sizes[0]
    ratio = statistics.median(r[0] for r in results[(small, "diffaugment")]) / statistics.median(
        r[0] for r in results[(small, "none")]
    )
    return lines, f"diffaugment_over_none_fid_at_{small}={ratio:.3f}"


# -- architecture -------------------------------------------------------------------------------


def _arch_job(item) -> tuple[float, list[tuple[float, float]]]:
    """One short study of one architecture: its best trial's lr and the best FID so far against the
    trials' own wall seconds spent."""
    spec, name, work, trials = item
    study = _study(spec, name, work, trials)
    done = [t for t in study.trials if t.value is not None or "fid_history" in t.user_attrs]
    spent, so_far, curve = 0.0, float("inf"), []
    for t in done:
        spent += t.user_attrs.get("wall_seconds", 0.0)
        so_far = min([so_far, *t.user_attrs.get("fid_history", [])])
        curve.append((spent, so_far))
    best = best_trial(study)
    # The best trial's sample grid, to look at beside the numbers.
    grid = best.user_attrs.get(SAMPLES_ATTR)
    if grid is not None:
        GRIDS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "artifacts" / grid, GRIDS / f"{name}.png")
    return best.params["lr"], curve


GRIDS = Path(__file__).resolve().parent.parent / "storage" / "bench" / "strategies_arch"
# Both architectures in the learning-curve table's setting (its MLP widths, 16,384 images, 6
# epochs), at one batch size and noise size that the table's MLPs learn at.
ARCH_BATCH, ARCH_NOISE = 32, 100


def arch(args, work: Path) -> tuple[list[str], str]:
    trials = 2 if args.quick else 6
    epochs, limit = (1, 2_000) if args.quick else (SETTING.max_epochs, SETTING.train_limit)
    samples = 500 if args.quick else SETTING.fid_samples
    _mnist_evaluator()  # built (and cached on disk) here once rather than by every job
    items = [
        (
            dataclasses.replace(
                SETTING,
                kind=kind,
                batch_size=ARCH_BATCH,
                noise_dim=ARCH_NOISE,
                max_epochs=epochs,
                train_limit=limit,
                fid_samples=samples,
                params=LR_SEARCH,
                seed=seed,
                pruner="hyperband",
            ),
            f"arch-{kind}-s{seed}",
            work,
            trials,
        )
        for kind in ("mlp", "dcgan")
        for seed in range(args.seeds)
    ]
    rows, curves, best = [], {}, {}
    for (spec, *_), (lr, curve) in zip(
        items, run_jobs(_arch_job, items, args.jobs, args.threads), strict=True
    ):
        so_far, spent = curve[-1][1], curve[-1][0]
        curves[(spec.kind, spec.seed)] = curve
        best.setdefault(spec.kind, []).append((so_far, spent))
        rows.append([spec.kind, spec.seed, f"{lr:.2g}", f"{so_far:.1f}", f"{spent:.0f}"])
    summary = [
        [
            kind,
            _common.median_range([r[0] for r in runs], "{:.1f}"),
            _common.median_range([r[1] for r in runs], "{:.0f}"),
        ]
        for kind, runs in best.items()
    ]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    alongside = f", {args.jobs} studies side by side" if args.jobs > 1 else ""
    lines = _common.header("Architecture: MLP against DCGAN")
    lines += [
        f"cGAN (concat, EMA {SETTING.ema_decay}, batch {ARCH_BATCH}, noise {ARCH_NOISE}), a study of "
        f"{trials} trials over lr (log 3e-4..5e-3, Hyperband) per architecture and seed, up to "
        f"{epochs} epoch(s) on the first {limit:,} MNIST training images, {samples:,}-sample FID; MLP "
        f"widths G {'-'.join(map(str, SETTING.generator_widths))}, D "
        f"{'-'.join(map(str, SETTING.discriminator_widths))} (the learning-curve table's); DCGAN "
        f"channels G {'-'.join(map(str, SETTING.generator_channels))}, D "
        f"{'-'.join(map(str, SETTING.discriminator_channels))}; on the {device}{alongside}; "
        f"{args.seeds} seed(s).",
        "",
        *_common.table(["kind", "best FID", "wall seconds (trials' own)"], summary),
        "",
        *_common.table(["kind", "seed", "best lr", "best FID", "wall seconds"], rows),
    ]
    if args.png is not None:
        plot(args.png, curves)
    ratio = statistics.median(r[0] for r in best["dcgan"]) / statistics.median(r[0] for r in best["mlp"])
    return lines, f"dcgan_over_mlp_best_fid={ratio:.3f}"


def plot(path: Path, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (kind, seed), curve in curves.items():
        color, label = ("C0" if kind == "mlp" else "C1"), (kind if seed == 0 else None)
        ax.step([c[0] for c in curve], [c[1] for c in curve], where="post", color=color, label=label)
    ax.set(xlabel="wall seconds (trials' own)", ylabel="best validation FID so far", yscale="log")
    ax.legend()
    _common.save_figure(fig, path)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--which", choices=("warm", "augment", "arch"), required=True, help="the strategy to measure"
    )
    p.add_argument("--seeds", type=int, help="seeds per setting (default 3; --quick 1)")
    p.add_argument(
        "--jobs", type=int, default=1, help="runs side by side in spawned processes (a GPU, spare cores)"
    )
    p.add_argument("--seen", type=int, default=150_000, help="--which augment: training images seen per run")
    args = p.parse_args()
    _common.setup(args)
    args.seeds = args.seeds or (1 if args.quick else 3)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        lines, headline = {"warm": warm, "augment": augment, "arch": arch}[args.which](args, Path(tmp))
    _common.finish(args, lines, headline)


if __name__ == "__main__":
    main()
