"""The one table of spec fields: each declared once, with everything the rest of the spec derives from it.

``FIELDS`` gives, per field, its TOML section, type, default, the article's default (what a spec stored
before the field existed ran with), whether a search space may name it, whether one training run needs
it, the names a str field may take and the range a number must lie in. ``RunConfig`` and ``StudySpec``
(genopt.spec.config), the TOML layout (genopt.spec.toml), ``SEARCHABLE`` and validation all come from
it, so a new searchable field is one entry here. Like the whole spec layer, this imports neither torch
nor Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODELS = ("gan", "cgan")
# The names of the registries beyond the spec layer, which tests/test_registries.py checks against them:
# the networks (genopt.models.ARCHITECTURES): the article's MLPs, or DCGAN-style convolutional ones
# (Radford et al. 2016);
ARCHITECTURE_NAMES = ("mlp", "dcgan")
# how a cGAN's discriminator sees the label (genopt.models.CONDITIONINGS): the article's one-hot appended
# to the image, a projection (Miyato & Koyama 2018), or an auxiliary classifier head (Odena et al. 2017);
CONDITIONING_NAMES = ("concat", "projection", "acgan")
# how a study searches (genopt.study.search.samplers.SAMPLERS, genopt.study.search.pruners.PRUNERS;
# chosen by replay, docs/benchmarks.md).
SAMPLER_NAMES = ("tpe", "gp", "random")
PRUNER_NAMES = ("behind_best", "hyperband", "successive_halving", "median", "patient", "none")
# Arithmetic of the training step: "bf16" runs forward passes under bfloat16 autocast (docs/benchmarks.md);
# "auto" is bf16 where the device multiplies bf16 natively, else fp32 (genopt.device.resolve_precision).
PRECISIONS = ("fp32", "bf16", "auto")
# Augmentation of the images D sees (genopt.augment): none, the article's flips and rotations of
# real images only, or DiffAugment's translation and cutout of real and generated images alike.
AUGMENTS = ("none", "article", "diffaugment")
# The adversarial loss: the non-saturating cross-entropy (Goodfellow et al. 2014), or the hinge loss
# (Lim & Ye 2017; SNGAN and BigGAN's), D: relu(1 - real) + relu(1 + fake), G: -fake.
LOSSES = ("bce", "hinge")
# What a trial minimises: "auto" is intra_fid (mean per-class FID) for a cgan, fid for a gan.
OBJECTIVES = ("auto", "fid", "intra_fid")
# An image folder's channels: "auto" is 3 when any image has colour, else 1.
CHANNELS = ("auto", "1", "3")
# Which epoch gives a trial its value and checkpoint: its best one, or its last (the article's).
SELECT_EPOCHS = ("best", "last")


@dataclass(frozen=True)
class Range:
    """The numbers a field may take: from ``low`` (excluded when ``low_open``) up to ``high`` (None: no
    bound; excluded when ``high_open``). ``why`` is said with it in an error."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def __contains__(self, value: Any) -> bool:
        # written so that NaN lies in no range
        above = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return bool(above)
        return bool(above and (value < self.high if self.high_open else value <= self.high))

    def interval(self) -> str:
        """``"[0, 1)"``; for a range without ``high``, what ``describe`` says."""
        if self.high is None:
            return self.describe()
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def describe(self) -> str:
        """``"at least 1"``, ``"positive"`` or ``"in [0, 1)"``, with ``why`` after it."""
        if self.high is not None:
            text = f"in {self.interval()}"
        elif self.low_open:
            text = "positive" if self.low == 0 else f"above {self.low}"
        else:
            text = f"at least {self.low}"
        return f"{text} ({self.why})" if self.why else text


AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1)  # [0, 1]
DECAY = Range(0, 1, high_open=True)  # [0, 1): Adam's betas, weight averaging


class _FromTheStart:
    def __repr__(self) -> str:
        return "FROM_THE_START"


# A field the article's specs had already: every stored spec holds it, so it has no article default.
FROM_THE_START: Any = _FromTheStart()
# The type of a list of network widths or channels (positive integers, at least one).
WIDTHS = tuple


@dataclass(frozen=True)
class Field:
    """One spec field.

    Attributes:
        name: the attribute of ``StudySpec`` (and of ``RunConfig`` when ``run``).
        section: its TOML table: "" (top level), "training", "architecture", "evaluation", "search"
            or "data".
        type: bool, int, float, str or ``WIDTHS``.
        default: what a new spec gets when its file leaves the field out.
        article: what a spec or run config stored before the field existed ran with (the article's
            behaviour), or ``FROM_THE_START`` for a field every stored spec holds.
        searchable: a spec's ``[search.params]`` may search it (a run field).
        run: one training run needs it (a ``RunConfig`` field).
        choices: the values a str field may take.
        range: the numbers an int or float field may take.
        optional: None is a value (the field is off).
        toml: its TOML key when not ``name``: fields sharing one are given together as a list.
    """

    name: str
    section: str
    type: type
    default: Any
    article: Any = FROM_THE_START
    searchable: bool = False
    run: bool = False
    choices: tuple[str, ...] | None = None
    range: Range | None = None
    optional: bool = False
    toml: str | None = None

    @property
    def annotation(self) -> str:
        """The dataclass annotation: ``"int"``, ``"tuple[int, ...]"``, ``"float | None"``."""
        text = "tuple[int, ...]" if self.type is WIDTHS else self.type.__name__
        return f"{text} | None" if self.optional else text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed for this field, in one line, or None if it is."""
        if value is None and self.optional:
            return None
        if self.type is bool and not isinstance(value, bool):
            return f"{self.name} must be true or false, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"unknown {self.name} {value!r}: choose one of {', '.join(self.choices)}"
        if self.type is WIDTHS and (not value or any(w < 1 for w in value)):
            return f"{self.name} must be a non-empty list of positive integers, got {list(value)}"
        if self.range is not None and value not in self.range:
            return f"{self.name} must be {self.range.describe()}, got {value}"
        return None


# The table. Its order is StudySpec's, which is the order a study stores its spec in (keep it).
FIELDS: tuple[Field, ...] = (
    Field("model", "", str, "gan", run=True, choices=MODELS),
    Field("dataset", "", str, "mnist"),
    # [training]: fixed values; those named in [search.params] are chosen per trial instead.
    Field("max_epochs", "training", int, 10, range=AT_LEAST_1),
    Field("lr", "training", float, 2e-4, searchable=True, run=True, range=POSITIVE),
    Field("batch_size", "training", int, 64, searchable=True, run=True, range=AT_LEAST_1),
    Field("noise_dim", "training", int, 100, searchable=True, run=True, range=AT_LEAST_1),
    Field("beta1", "training", float, 0.5, searchable=True, run=True, range=DECAY, toml="betas"),
    Field("beta2", "training", float, 0.999, searchable=True, run=True, range=DECAY, toml="betas"),
    Field("train_limit", "training", int, None, run=True, range=AT_LEAST_1, optional=True),
    # bf16 on a CPU with native bf16, else fp32: no worse by FID, intra-FID or label accuracy over
    # 5 seeds, faster (docs/benchmarks.md; its script: git show 628adbb:bench/precision_quality.py).
    Field("precision", "training", str, "auto", article="fp32", run=True, choices=PRECISIONS),
    # Generator weight averaging (0 is off): measured in docs/quality.md (git show 90689b8:bench/levers.py).
    Field("ema_decay", "training", float, 0.999, article=0.0, searchable=True, run=True, range=DECAY),
    # Augmentation (genopt.augment): each image is transformed with augment_probability. Like kind
    # below, the default is what specs stored before the field ran with (docs/strategies.md).
    Field("augment", "training", str, "none", article="none", searchable=True, run=True, choices=AUGMENTS),
    Field(
        "augment_probability", "training", float, 1.0, article=1.0, searchable=True, run=True, range=FRACTION
    ),
    # [architecture]: the seed's MLPs.
    Field("generator_widths", "architecture", WIDTHS, (256, 512, 1024), run=True),
    Field("discriminator_widths", "architecture", WIDTHS, (512, 256), run=True),
    Field("leaky_slope", "architecture", float, 0.2, run=True),
    Field(
        "conditioning",
        "architecture",
        str,
        "concat",
        article="concat",
        searchable=True,
        run=True,
        choices=CONDITIONING_NAMES,
    ),
    Field("spectral_norm", "architecture", bool, False, article=False, searchable=True, run=True),
    # "dcgan": convolutional networks with these channels per stage (G from its smallest image up,
    # D from the image down) instead of the widths above (docs/strategies.md).
    Field(
        "kind",
        "architecture",
        str,
        "mlp",
        article="mlp",
        searchable=True,
        run=True,
        choices=ARCHITECTURE_NAMES,
    ),
    Field("generator_channels", "architecture", WIDTHS, (128, 64), article=(128, 64), run=True),
    Field("discriminator_channels", "architecture", WIDTHS, (64, 128), article=(64, 128), run=True),
    # [evaluation]
    Field("fid_samples", "evaluation", int, 10_000, range=Range(2, why="a covariance needs two samples")),
    Field("objective", "evaluation", str, "auto", article="fid", choices=OBJECTIVES),
    Field("min_label_accuracy", "evaluation", float, None, article=None, range=FRACTION, optional=True),
    Field("select_epoch", "evaluation", str, "best", article="last", choices=SELECT_EPOCHS),
    # [search]: chosen by replaying candidates on a learning-curve table (docs/benchmarks.md). The
    # article's search, which stored specs without these fields ran: multivariate TPE after 10 random
    # trials, Hyperband from 1 epoch. These fields alone may change when a study resumes
    # (genopt.study.search.RESUMABLE_FIELDS): they say how it searches, not what its scores mean.
    Field("sampler", "search", str, "gp", choices=SAMPLER_NAMES),
    Field("multivariate", "search", bool, True, article=True),  # TPE only: one joint model of all parameters
    # TPE and GP: random trials before the model is used
    Field("startup_trials", "search", int, 5, article=10, range=Range(0)),
    # GP: from this many trials on, multivariate TPE draws instead (0: never)
    Field("tpe_after", "search", int, 15, article=0, range=Range(0)),
    Field("pruner", "search", str, "behind_best", choices=PRUNER_NAMES),
    # behind_best, hyperband and successive_halving: epochs every trial runs (at most max_epochs)
    Field("min_resource", "search", int, 2, article=1, range=AT_LEAST_1),
    # behind_best: stop a trial scoring over this times the epoch's best
    Field("behind_factor", "search", float, 1.5, range=Range(1)),
    Field("seed", "search", int, 0),
    Field("keep_checkpoints", "search", int, 5, range=AT_LEAST_1),
    # [data]: how a folder of image files is read (genopt.data.folder); IDX data keeps its own size
    # and channel. None: 64 when the images' median short side is at least 64, else 32.
    Field("image_size", "data", int, None, article=None, range=Range(4), optional=True),
    # "auto": 3 when any image has colour, else 1.
    Field("channels", "data", str, "auto", article="auto", choices=CHANNELS),
    # [search], --trials auto (genopt.study.search.stopping): stop once the best value has gained at most
    # auto_min_improvement (relative) over the last auto_patience scored trials, or at auto_max_trials.
    # Chosen by replay (docs/benchmarks.md).
    Field("auto_patience", "search", int, 25, article=25, range=AT_LEAST_1),
    Field("auto_min_improvement", "search", float, 0.005, article=0.005, range=DECAY),
    Field("auto_max_trials", "search", int, 100, article=100, range=AT_LEAST_1),
    # The discriminator's learning rate as a multiple of lr (the two time-scale rule, Heusel et al. 2017).
    Field("d_lr_ratio", "training", float, 1.0, article=1.0, searchable=True, run=True, range=POSITIVE),
    # A GAN's categorical latent code (0: none), read from the noise, with D's head for it (InfoGAN).
    Field("latent_codes", "architecture", int, 0, article=0, searchable=True, run=True, range=Range(0)),
    Field("loss", "training", str, "bce", article="bce", searchable=True, run=True, choices=LOSSES),
)
FIELD: dict[str, Field] = {f.name: f for f in FIELDS}

# Training fields a search space may name; the others of RunConfig are fixed per study.
# str and bool fields are searched over ``choices`` only.
SEARCHABLE: dict[str, type] = {f.name: f.type for f in FIELDS if f.searchable}
# What a field absent from a stored spec means: the article's behaviour, which a spec stored before
# the field existed was run with. New specs default differently (see ``StudySpec``).
ARTICLE_BEHAVIOUR: dict[str, Any] = {f.name: f.article for f in FIELDS if f.article is not FROM_THE_START}


def is_number(value: Any, kind: type) -> bool:
    """Whether ``value`` is an int (``kind`` int) or an int or float (``kind`` float); a bool is neither."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, int | float)
