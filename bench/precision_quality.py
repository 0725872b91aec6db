"""bf16 autocast and sample quality: the cGAN trained in fp32 and in bf16 from the same seeds, scored alike.

The training speed of bf16 is ``train_throughput.py``'s; this asks whether it costs sample quality,
which decides whether ``precision = "auto"`` may pick bf16. Each seed trains a cGAN with genopt's
``train`` in the learning-curve table's setting (``curves.SETTING``: narrower MLPs, the first 16,384
images, 6 epochs) at one of the table's good configurations (``curves.LEARNING_CONFIG``, which draws
the requested digits there), once per precision, and the objective's own scoring
(``evaluate_generator``, the fixed evaluation noise) scores both against the validation split: FID,
intra-FID and label accuracy. A difference between the precisions means something only against the
seed-to-seed spread of either, so both are reported. (A setting where generators do not learn yet,
as the seed's MLPs at 3 epochs, compares noise with noise.)
"""

from __future__ import annotations

import dataclasses
import statistics

import _common
import torch
from curves import LEARNING_CONFIG, QUICK_SETTING, SETTING

from genopt.data import load_dataset
from genopt.metrics import FidEvaluator
from genopt.spec import StudySpec
from genopt.study.objective import evaluate_generator
from genopt.train import train

CONFIG = LEARNING_CONFIG
PRECISIONS = ("fp32", "bf16")
SCORES = ("fid", "intra_fid", "label_accuracy")


def precision_scores(spec: StudySpec, seeds: list[int], fid_samples: int, device) -> list[dict]:
    """Scores after training ``CONFIG`` in fp32 and in bf16, same seeds: one row per seed and precision."""
    evaluator = FidEvaluator(load_dataset(spec.dataset), device=device)
    dataset = evaluator.dataset
    rows = []
    for seed in seeds:
        for precision in PRECISIONS:
            config = dataclasses.replace(spec, precision=precision).run_config(CONFIG, seed=seed)
            result = train(config, dataset, device=device)
            scores = evaluate_generator(evaluator, result.generator, fid_samples)
            rows.append(
                {"seed": seed, "precision": precision, **scores.as_dict(), "ips": result.images_per_second}
            )
        fp32, bf16 = rows[-2], rows[-1]
        print(
            f"seed {seed}: FID fp32 {fp32['fid']:.2f} bf16 {bf16['fid']:.2f}; label accuracy fp32 "
            f"{fp32['label_accuracy']:.3f} bf16 {bf16['label_accuracy']:.3f}",
            flush=True,
        )
    return rows


def spread(values: list[float], fmt: str, sign: bool = False) -> str:
    """``median (min to max), sd S``: the centre and the seed-to-seed spread."""
    signed = "{:+" + fmt[2:] if sign else fmt
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    low, mid, high = (signed.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low} to {high}), sd {fmt.format(sd)}"


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, help="training seeds 0..N-1 per precision (default 5; --quick 2)")
    args = p.parse_args()
    if args.seeds is not None and args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    _common.setup(args)
    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    spec, fid_samples = (QUICK_SETTING, 2_000) if args.quick else (SETTING, 10_000)
    rows = precision_scores(spec, seeds, fid_samples, torch.device("cpu"))
    by = {(r["seed"], r["precision"]): r for r in rows}

    lines = _common.header("bf16 autocast and sample quality")
    lines += [
        f"cGAN in the learning-curve table's setting (MLPs G {spec.generator_widths}, D "
        f"{spec.discriminator_widths}, EMA {spec.ema_decay}) at lr {CONFIG['lr']:g}, batch "
        f"{CONFIG['batch_size']}, noise {CONFIG['noise_dim']}, {spec.max_epochs} epochs of the first "
        f"{spec.train_limit:,} images, seeds {seeds[0]}-{seeds[-1]}, the same seeds in both precisions; "
        f"validation scores of {fid_samples} samples (genopt's feature-net FID, intra-FID, label "
        "accuracy). Read the bf16 - fp32 difference against the seed-to-seed spread of either.",
        "",
    ]
    lines += _common.table(
        [
            "seed",
            "FID fp32",
            "FID bf16",
            "intra-FID fp32",
            "intra-FID bf16",
            "label acc. fp32",
            "label acc. bf16",
        ],
        [
            [
                s,
                f"{by[(s, 'fp32')]['fid']:.2f}",
                f"{by[(s, 'bf16')]['fid']:.2f}",
                f"{by[(s, 'fp32')]['intra_fid']:.2f}",
                f"{by[(s, 'bf16')]['intra_fid']:.2f}",
                f"{by[(s, 'fp32')]['label_accuracy']:.3f}",
                f"{by[(s, 'bf16')]['label_accuracy']:.3f}",
            ]
            for s in seeds
        ],
    )
    lines += [
        "",
        "Over seeds: median (min to max), standard deviation; the difference is per seed, bf16 - fp32.",
        "",
    ]
    summary = []
    for name, fmt in (("fid", "{:.2f}"), ("intra_fid", "{:.2f}"), ("label_accuracy", "{:.3f}")):
        values = {p: [by[(s, p)][name] for s in seeds] for p in PRECISIONS}
        delta = [b - a for a, b in zip(values["fp32"], values["bf16"], strict=True)]
        summary.append(
            [name, spread(values["fp32"], fmt), spread(values["bf16"], fmt), spread(delta, fmt, sign=True)]
        )
    ips = {p: statistics.median(by[(s, p)]["ips"] for s in seeds) for p in PRECISIONS}
    summary.append(["img/s (median)", f"{ips['fp32']:,.0f}", f"{ips['bf16']:,.0f}", ""])
    lines += _common.table(["score", "fp32", "bf16", "bf16 - fp32"], summary)
    fid_delta = statistics.median(by[(s, "bf16")]["fid"] - by[(s, "fp32")]["fid"] for s in seeds)
    acc_delta = statistics.median(
        by[(s, "bf16")]["label_accuracy"] - by[(s, "fp32")]["label_accuracy"] for s in seeds
    )
    _common.finish(
        args, lines, f"bf16_label_accuracy_delta={acc_delta:+.3f}", f"bf16_fid_delta={fid_delta:+.2f}"
    )


if __name__ == "__main__":
    main()
