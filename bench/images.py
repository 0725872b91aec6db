"""Your own images: the default cGAN study on a folder of colour PNG and JPEG digits, to an export.

It writes MNIST's 70,000 digits as a user's folder of colour pictures (``write_coloured_digits`` in
tests/mnist_subsets.py: each digit in its own random bright colour on black, 32x32, PNG and JPEG in
turn), in ``train/digit-K/`` and ``test/digit-K/`` as MNIST splits them, and then:

1. reads it as ``genopt study`` does, twice: the first read decodes every file in parallel over the
   machine's cores and caches the tensors under the run's ``storage/cache/images``; the second finds
   the cache (it still hashes every file, to know the folder has not changed);
2. runs the shipped default cGAN study on it through the console script, ``genopt study --model cgan
   --data-dir FOLDER``, stopped at ``--budget`` minutes, then ``genopt ensemble`` (top 5, mode auto)
   and ``genopt sample`` for the export's grid (``--grid``), as bench/time_to_quality.py does.

Headlines: ``images_label_accuracy`` (the export's validation label accuracy, by genopt's own feature
network trained on the folder's train split; the target is 0.95), ``images_fid`` and
``images_fid_over_floor`` (the export's validation FID, and over the floor: the test split against
validation), ``images_decode_per_s`` (the first read) and ``images_cache_speedup`` (first read's
seconds over the second's). ``--quick``: 7,000 digits, 2 one-epoch trials on 4,096 of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import optuna
import time_to_quality
import torch

sys.path.insert(0, str(harness.ROOT / "tests"))  # the folder the tests build, at full size
from mnist_subsets import write_coloured_digits  # noqa: E402

from genopt.data import load_dataset  # noqa: E402
from genopt.data.folder import load_image_folder  # noqa: E402
from genopt.study.stored import FID_FLOOR_ATTR  # noqa: E402


def write_folder(folder: Path, per_split: dict[str, int]) -> int:
    """MNIST's first ``per_split[s]`` train+validation and test digits, coloured, as class folders."""
    mnist = load_dataset("mnist")
    sources = {
        "train": (
            torch.cat([mnist.train.images, mnist.validation.images]),
            torch.cat([mnist.train.labels, mnist.validation.labels]),
        ),
        "test": (mnist.test.images, mnist.test.labels),
    }
    for offset, (split, (images, labels)) in enumerate(sources.items()):
        n = per_split[split]
        write_coloured_digits(images[:n], labels[:n], folder / split, seed=offset)
    return sum(per_split.values())


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--budget", type=float, default=45.0, help="minutes the study may run (default 45)")
    p.add_argument("--trials", type=int, default=20, help="trials at most (default 20)")
    p.add_argument("--seed", type=int, default=0, help="the study's seed (default 0)")
    p.add_argument("--grid", type=Path, help="write the export's sample grid here (PNG)")
    p.add_argument("--keep", type=Path, help="keep the folder, the study and the export here")
    args = p.parse_args()
    args.grids = None
    if args.quick:
        args.trials, args.budget = 2, 6.0
    report = harness.Report("Your own images: the default cGAN on a folder of colour digits", args)
    with tempfile.TemporaryDirectory(prefix="genopt-images-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ["GENOPT_HOME"] = str(work / "storage")  # a cold cache, as on a user's first study
        args.data_dir = work / "coloured-digits"
        sizes = {"train": 6_000, "test": 1_000} if args.quick else {"train": 60_000, "test": 10_000}
        started = time.perf_counter()
        files = write_folder(args.data_dir, sizes)
        print(f"wrote {files} files in {time.perf_counter() - started:.0f} s", flush=True)

        reads = []
        for _ in range(2):
            started = time.perf_counter()
            dataset = load_image_folder(args.data_dir)
            reads.append((time.perf_counter() - started, dataset.details.get("cache")))
        (first, first_cache), (second, second_cache) = reads
        report.add(
            f"Folder: {files:,} files ({files // 2:,} PNG, the rest JPEG), {dataset.num_classes} classes, "
            f"read as {'x'.join(map(str, dataset.image_shape))}; train / validation / test "
            f"{len(dataset.train):,} / {len(dataset.validation):,} / {len(dataset.test):,}.",
            "",
        )
        report.table(
            ["read", "cache", "seconds", "images/s"],
            [
                ["first", first_cache, f"{first:.1f}", f"{files / first:,.0f}"],
                ["second", second_cache, f"{second:.1f}", f"{files / second:,.0f}"],
            ],
        )

        run = time_to_quality.run_one("default", args.seed, args, work)
        study = optuna.load_study(
            study_name=f"ttq-default-s{args.seed}", storage=f"sqlite:///{work / 'ttq.db'}"
        )
        floor = study.user_attrs[FID_FLOOR_ATTR]
        mode = run.export.get("mode", "-")
        accuracy = time_to_quality.exported(run, "validation", "label_accuracy")
        fid = time_to_quality.exported(run, "validation", "fid")
        if args.grid is not None and run.export:
            export = work / f"ttq-default-s{args.seed}.pt"
            sample = ["sample", "--checkpoint", str(export), "--n", "100", "--out", str(args.grid)]
            done = subprocess.run([str(time_to_quality.GENOPT), *sample])
            if done.returncode == 0:
                report.add(f"The export's grid: {harness.relative(args.grid)}.", "")
    last = run.points[-1] if run.points else None
    report.add(
        f"Study: `genopt study --model cgan --data-dir FOLDER --trials {args.trials} --seed {args.seed}` "
        f"(studies/cgan.toml as shipped), stopped at {args.budget:g} minutes if still running "
        f"({run.stopped} ended it after {run.minutes:.1f} min, {len(run.points)} trials finished); then "
        f"`genopt ensemble` (top 5, mode auto) chose **{mode}**."
        + (" Quick: 2 trials of 1 epoch on 4,096 images, 1,000 samples a score." if args.quick else ""),
        "",
    )
    report.table(
        ["", "label accuracy", "intra-FID", "FID", "FID floor"],
        [
            [
                f"best trial ({last.best_trial})" if last else "best trial",
                f"{last.label_accuracy:.4f}" if last else "-",
                f"{last.intra_fid:.2f}" if last else "-",
                "",
                "",
            ],
            [
                f"export ({mode}), validation",
                f"{accuracy:.4f}",
                f"{time_to_quality.exported(run, 'validation', 'intra_fid'):.2f}",
                f"{fid:.2f}",
                f"{floor:.2f}",
            ],
            [
                f"export ({mode}), test",
                f"{time_to_quality.exported(run, 'test', 'label_accuracy'):.4f}",
                f"{time_to_quality.exported(run, 'test', 'intra_fid'):.2f}",
                f"{time_to_quality.exported(run, 'test', 'fid'):.2f}",
                "",
            ],
        ],
    )
    report.headline("images_label_accuracy", accuracy, "{:.4f}")
    report.headline("images_fid", fid)
    report.headline("images_fid_over_floor", fid / floor)
    report.headline("images_decode_per_s", files / first, "{:.0f}")
    report.headline("images_cache_speedup", first / second)
    report.finish()


if __name__ == "__main__":
    main()
