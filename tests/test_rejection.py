"""Rejection sampling at export (genopt.ensemble.rejection): real MNIST digits, genopt's real feature
network, and a tiny unconditional study exported through the console script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from cli_runner import article_spec, genopt, tiny_budget
from torch import nn

from genopt.ensemble.export import export_program, load_ensemble
from genopt.ensemble.rejection import CONFIDENCE, Rejection, draw_kept, fit_rejection
from genopt.metrics import feature_network
from genopt.metrics.statistics import UNSURE_BELOW


class DigitBank(nn.Module):
    """Stands in for an unconditional ensemble that draws too many 1s and some images of no digit:
    real test digits, a third of them 1s, and a tenth of the bank two digits laid over each other.
    Its "noise" is an index into the bank; it knows each image's true digit (-1: two digits)."""

    def __init__(self, mnist):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        images, labels = mnist.test.images.float() / 255, mnist.test.labels
        ones = torch.nonzero(labels == 1).flatten()
        picked = torch.cat([torch.randperm(len(labels), generator=g)[:3000], ones[:1000]])
        a, b = torch.randperm(len(labels), generator=g)[: 2 * 500].view(2, -1)
        keep = labels[a] != labels[b]
        self.bank = torch.cat([images[picked], (images[a[keep]] + images[b[keep]]).clamp(max=1)])
        self.truth = torch.cat([labels[picked], torch.full((int(keep.sum()),), -1)])
        self.image_shape = tuple(self.bank.shape[1:])
        self.rejection = None

    def inputs(self, n, labels=None, generator=None):
        return (torch.randint(len(self.bank), (n,), generator=generator),)

    def forward(self, index, labels=None):
        return self.bank[index]

    def truth_of(self, images):
        """The true digit of each of ``images`` (drawn from the bank), found by a fingerprint."""
        w = torch.randn(self.bank[0].numel(), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        bank, drawn = self.bank.flatten(1).double() @ w, images.flatten(1).double() @ w
        return self.truth[(drawn[:, None] - bank[None]).abs().argmin(dim=1)]


def distance_to_uniform(labels: torch.Tensor) -> float:
    """Total variation between the share of each digit 0..9 in ``labels`` and a tenth each."""
    share = torch.bincount(labels[labels >= 0], minlength=10).double() / len(labels)
    return 0.5 * float((share - 0.1).abs().sum() + (labels < 0).double().mean())


def test_kept_digits_follow_the_target_classes_by_their_true_labels_not_only_the_network(mnist):
    bank = DigitBank(mnist)
    net = feature_network(mnist, device="cpu")
    rejection = fit_rejection(
        bank, net, torch.full((10,), 0.1), samples=4000, generator=torch.Generator().manual_seed(1)
    )
    bank.rejection = rejection
    kept = draw_kept(bank, 2000, torch.Generator().manual_seed(2))
    raw = bank(*bank.inputs(2000, generator=torch.Generator().manual_seed(2)))
    truth, raw_truth = bank.truth_of(kept), bank.truth_of(raw)

    def share(labels, digit):
        return float((labels == digit).float().mean())

    assert kept.shape == (2000, 1, 28, 28)
    # The bank's own draws: 29 % 1s and 11 % no digit at all, 0.3 from a tenth of each digit.
    assert share(raw_truth, 1) > 0.25 and share(raw_truth, -1) > 0.09
    assert distance_to_uniform(raw_truth) > 0.25
    # Kept, by the images' true labels: a tenth of 1s, and fewer images of no digit (the network is
    # sure of 61 % of the overlaid pairs, so the filter catches only part of them).
    assert abs(share(truth, 1) - 0.1) < 0.02
    assert share(truth, -1) < 0.8 * share(raw_truth, -1)
    assert distance_to_uniform(truth) < 0.4 * distance_to_uniform(raw_truth)
    top = net.logits(kept * 2 - 1).softmax(dim=1).max(dim=1).values
    assert bool((top >= CONFIDENCE).all()) and rejection.confidence == CONFIDENCE
    assert 0.3 < rejection.acceptance_rate < 0.9
    # The same seed gives the same images; another gives others.
    assert torch.equal(kept, draw_kept(bank, 2000, torch.Generator().manual_seed(2)))
    assert not torch.equal(kept[:50], draw_kept(bank, 50, torch.Generator().manual_seed(3)))


def test_a_stricter_filter_keeps_fewer_overlays_and_only_images_it_is_that_sure_of(mnist):
    bank = DigitBank(mnist)
    net = feature_network(mnist, device="cpu")
    kept = {}
    for confidence in (UNSURE_BELOW, 0.999):
        bank.rejection = fit_rejection(
            bank, net, torch.full((10,), 0.1), samples=4000, generator=torch.Generator().manual_seed(1),
            confidence=confidence,
        )  # fmt: skip
        assert bank.rejection.confidence == confidence
        kept[confidence] = draw_kept(bank, 2000, torch.Generator().manual_seed(2))
    strict = kept[0.999]
    top = net.logits(strict * 2 - 1).softmax(dim=1).max(dim=1).values
    assert bool((top >= 0.999).all())
    overlays = {c: float((bank.truth_of(k) == -1).float().mean()) for c, k in kept.items()}
    assert overlays[0.999] < 0.7 * overlays[UNSURE_BELOW]
    assert abs(float((bank.truth_of(strict) == 1).float().mean()) - 0.1) < 0.02
    # A record carries its confidence back.
    again = Rejection.from_record(bank.rejection.record(), name="x")
    assert again.confidence == 0.999
    with pytest.raises(ValueError, match="confidence"):
        fit_rejection(bank, net, torch.ones(10), samples=10, generator=torch.Generator(), confidence=1.0)


def test_a_generator_of_no_digit_gets_a_filter_that_keeps_nothing(mnist):
    # Flat grey: the network is sure of no class. (It is sure of uniform noise, as an 8, and of a
    # black image, as a 1: the filter is only as good as the network's doubt.)
    bank = DigitBank(mnist)
    bank.bank = torch.full((len(bank.bank), 1, 28, 28), 0.5)
    net = feature_network(mnist, device="cpu")
    rejection = fit_rejection(bank, net, torch.full((10,), 0.1), samples=500, generator=torch.Generator())
    assert rejection.acceptance_rate == 0 and not rejection.accept.any()


@pytest.fixture(scope="module")
def gan_export(tmp_path_factory):
    """A one-trial unconditional study on real MNIST, exported with rejection sampling and a program."""
    folder = tmp_path_factory.mktemp("rejection")
    url = f"sqlite:///{folder / 'gan.db'}"
    common = ["--study", "tiny-gan", "--storage", url, "--artifact-dir", str(folder / "artifacts")]
    made = genopt(
        "study", "--model", "gan", *article_spec("gan"), *common, "--trials", "1",
        *tiny_budget(train_limit=2000, fid_samples=500), "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    path = folder / "gan.pt"
    done = genopt("ensemble", *common, "--out", str(path), "--torch-export", "--rejection", "classes")
    assert done.returncode == 0, done.stderr
    assert "+ rejection" in done.stdout and "rejection sampling      keeps" in done.stdout
    assert f"at least {CONFIDENCE:g} sure of" in done.stdout
    return path, common


@pytest.mark.slow
def test_a_filtered_export_records_its_filter_and_samples_through_it_anywhere(gan_export, tmp_path):
    path, _ = gan_export
    described = json.loads(path.with_suffix(".json").read_text())
    record = described["rejection"]
    assert record["method"] == "classes" and "state_dict" not in record
    assert record["confident_at_least"] == CONFIDENCE and len(record["accept"]) == 10
    assert set(described["scores"]) == {"best_single", "mean", "mixture", "rejection"}
    assert described["program"]["outputs"] == ["images", "kept"]
    assert described["program"]["inputs"][-1]["name"] == "accept_draw"

    # A fresh process draws the same filtered images for the same seed.
    code = (
        "import sys, torch, genopt\n"
        "e = genopt.load_ensemble(sys.argv[1])\n"
        "torch.save(e.sample(30, generator=torch.Generator().manual_seed(5)), sys.argv[2])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "x.pt")], capture_output=True
    )
    assert result.returncode == 0, result.stderr
    ensemble = load_ensemble(path)
    assert ensemble.rejection is not None
    expected = ensemble.sample(30, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.load(tmp_path / "x.pt", weights_only=True), expected)

    # The program, with torch only, says which images the filter keeps, as the module does. A filter
    # keeping about half of every class makes the check tell kept from thrown away.
    ensemble.rejection.accept.fill_(0.5)
    export_program(ensemble, path=tmp_path / "half.pt2")
    inputs = (*ensemble.inputs(64, generator=torch.Generator().manual_seed(6)), torch.rand(64))
    torch.save(list(inputs), tmp_path / "inputs.pt")
    code = (
        "import sys, torch\n"
        "p = torch.export.load(sys.argv[1]).module()\n"
        "torch.save(p(*torch.load(sys.argv[2], weights_only=True)), sys.argv[3])\n"
        "assert not any(m.startswith('genopt') for m in sys.modules)\n"
    )
    args = [str(tmp_path / "half.pt2"), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    images, kept = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(images, ensemble(inputs[0], None, *inputs[1:-1]))  # a mixture's choices too
    assert torch.equal(kept, ensemble.rejection(images, inputs[-1]))
    assert 0 < int(kept.sum()) < 64


@pytest.mark.slow
def test_rejection_is_refused_for_a_conditional_study_and_none_exports_without_it(
    gan_export, tiny_study, tmp_path
):
    refused = genopt(
        "ensemble", "--study", tiny_study.name, "--storage", tiny_study.url, "--rejection", "classes",
        "--out", str(tmp_path / "c.pt"),
    )  # fmt: skip
    assert refused.returncode != 0 and not (tmp_path / "c.pt").exists()
    assert refused.stderr.strip().count("\n") == 0
    assert "needs an unconditional study of labelled data" in refused.stderr
    _, common = gan_export
    plain = genopt("ensemble", *common, "--out", str(tmp_path / "plain.pt"), "--rejection", "none")
    assert plain.returncode == 0, plain.stderr
    assert "rejection" not in json.loads((tmp_path / "plain.json").read_text())
    assert load_ensemble(tmp_path / "plain.pt").rejection is None

    # Another confidence is recorded and drawn through; one outside (0, 1) is refused in one line
    # before any work.
    loose = genopt(
        "ensemble",
        *common,
        "--out",
        str(tmp_path / "s.pt"),
        "--rejection",
        "classes",
        "--rejection-confidence",
        "0.9",
    )
    assert loose.returncode == 0, loose.stderr
    assert "at least 0.9 sure of" in loose.stdout
    assert json.loads((tmp_path / "s.json").read_text())["rejection"]["confident_at_least"] == 0.9
    assert load_ensemble(tmp_path / "s.pt").rejection.confidence == 0.9
    bad = genopt("ensemble", *common, "--out", str(tmp_path / "b.pt"), "--rejection-confidence", "1")
    assert bad.returncode == 2 and not (tmp_path / "b.pt").exists()
    assert "must be between 0 and 1" in bad.stderr.strip().splitlines()[-1]
