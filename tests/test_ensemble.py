"""Ensembles end to end: a tiny cGAN study on real MNIST, exported, reloaded, sampled and refused."""

from __future__ import annotations

import fractions
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from cli_runner import genopt

from genopt.ensemble.export import FORMAT, load_ensemble
from genopt.ensemble.mixture import greedy_mixture, mixture_statistics
from genopt.errors import GenoptError
from genopt.metrics import frechet_distance

STUDY = "tiny-cgan"  # conftest's shared tiny_study: 4 COMPLETE cGAN trials, each with its checkpoint kept


@pytest.fixture(scope="module")
def storage(tiny_study) -> str:
    assert tiny_study.name == STUDY
    return tiny_study.url


@pytest.fixture(scope="module")
def exports(storage, tmp_path_factory) -> dict[str, Path]:
    """The study's top-3 ensemble exported in each mode, with its .pt2 program."""
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for mode in ("mean", "mixture"):
        path = folder / f"{mode}.pt"
        result = genopt(
            "ensemble", "--study", STUDY, "--storage", storage, "--top-k", "3", "--mode", mode,
            "--out", str(path), "--torch-export",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        for row in ("best single (trial", "mean", "mixture", "mixture weights"):
            assert row in result.stdout
        paths[mode] = path
    return paths


def described(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mean", "mixture"])
def test_checkpoint_is_plain_tensors_with_its_sha256_and_scores_beside_it(exports, storage, mode):
    path = exports[mode]
    info = described(path)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format"] == info["format"] == FORMAT
    assert checkpoint["mode"] == info["mode"] == mode
    assert checkpoint["model"] == "cgan" and checkpoint["dataset"]["name"] == "mnist"
    assert checkpoint["image_shape"] == [1, 28, 28] and checkpoint["value_range"] == [0.0, 1.0]
    for key in ("genopt_version", "created", "scores", "study", "top_k"):
        assert checkpoint[key] == info[key]
    for scores in info["scores"].values():
        for split in ("validation", "test"):
            assert scores[split]["fid"] > 0 and scores[split]["intra_fid"] > 0
            assert 0 <= scores[split]["label_accuracy"] <= 1
    assert info["objective"] == "intra_fid"  # a cGAN study is chosen by intra-FID
    assert sum(m["weight"] for m in checkpoint["members"]) == pytest.approx(1.0)
    assert {"generator_config", "state_dict", "trial_number", "value"} <= set(checkpoint["members"][0])

    # The members are the 3 best COMPLETE trials, and their score from statistics is the trial's own.
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    best3 = sorted(trials, key=lambda t: t.value)[:3]
    assert [c["trial_number"] for c in info["candidates"]] == [t.number for t in best3]
    assert info["best_single_trial"] == best3[0].number
    validation = {name: by_split["validation"]["intra_fid"] for name, by_split in info["scores"].items()}
    assert validation["best_single"] == pytest.approx(best3[0].value, rel=1e-4)
    # Greedy selection never ends above the best single member.
    assert validation["mixture"] <= validation["best_single"] + 1e-9


@pytest.mark.slow
def test_round_trip_in_a_fresh_process_gives_the_same_images_for_the_same_seed(exports, tmp_path):
    code = (
        "import sys, torch, genopt\n"
        "for path, out in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    e = genopt.load_ensemble(path)\n"
        "    x = e.sample(20, generator=torch.Generator().manual_seed(7))\n"
        "    y = e.sample(20, labels=3, generator=torch.Generator().manual_seed(7))\n"
        "    torch.save([x, y], out)\n"
    )
    args = [a for mode, path in exports.items() for a in (str(path), str(tmp_path / f"{mode}.pt"))]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for mode, path in exports.items():
        x, y = torch.load(tmp_path / f"{mode}.pt", weights_only=True)
        assert x.shape == y.shape == (20, 1, 28, 28)
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        ensemble = load_ensemble(path)
        assert torch.equal(x, ensemble.sample(20, generator=torch.Generator().manual_seed(7)))
        assert torch.equal(y, ensemble.sample(20, labels=3, generator=torch.Generator().manual_seed(7)))
        assert not torch.equal(x, ensemble.sample(20, generator=torch.Generator().manual_seed(8)))


@pytest.mark.slow
def test_torch_export_program_gives_the_same_images_without_genopt(exports, tmp_path):
    code = (
        "import sys, torch\n"
        "for program, inputs, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):\n"
        "    p = torch.export.load(program).module()\n"
        "    torch.save(p(*torch.load(inputs, weights_only=True)), out)\n"
        "assert not any(m.startswith('genopt') for m in sys.modules)\n"
    )
    args, expected = [], {}
    for mode, path in exports.items():
        ensemble = load_ensemble(path)
        inputs = ensemble.inputs(13, generator=torch.Generator().manual_seed(3))
        assert [i["name"] for i in described(path)["program"]["inputs"]] == (
            ["noise", "labels"] + (["choice"] if mode == "mixture" else [])
        )
        torch.save(list(inputs), tmp_path / f"{mode}-inputs.pt")
        expected[mode] = ensemble(*inputs)
        args += [
            str(path.with_suffix(".pt2")),
            str(tmp_path / f"{mode}-inputs.pt"),
            str(tmp_path / f"{mode}.pt"),
        ]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for mode, images in expected.items():
        assert torch.equal(torch.load(tmp_path / f"{mode}.pt", weights_only=True), images)


@pytest.mark.slow
def test_auto_exports_the_mode_with_the_lower_validation_objective(storage, tmp_path):
    path = tmp_path / "auto.pt"
    result = genopt(
        "ensemble", "--study", STUDY, "--storage", storage, "--top-k", "2", "--fid-samples", "500",
        "--out", str(path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = described(path)
    scores = {mode: info["scores"][mode]["validation"]["intra_fid"] for mode in ("mean", "mixture")}
    assert info["mode"] == min(scores, key=scores.get)
    assert not path.with_suffix(".pt2").exists()


@pytest.mark.slow
def test_sample_writes_a_grid_with_one_row_per_class(exports, tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    result = genopt("sample", "--checkpoint", str(exports["mixture"]), "--n", "20", "--out", str(out))
    assert result.returncode == 0, result.stderr
    # 10 rows of 2 images, 28 px each with 2 px padding around.
    assert Image.open(out).size == (2 + 2 * 30, 2 + 10 * 30)


def _refused(path: Path, message: str) -> None:
    with pytest.raises(GenoptError, match=message):
        load_ensemble(path)
    result = genopt("sample", "--checkpoint", str(path), "--out", str(path.with_suffix(".png")))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_checkpoint_carrying_a_pickled_object_is_refused(exports, tmp_path):
    checkpoint = torch.load(exports["mean"], weights_only=True)
    checkpoint["note"] = fractions.Fraction(1, 3)  # any object that needs more than tensors to load
    path = tmp_path / "pickled.pt"
    torch.save(checkpoint, path)
    info = described(exports["mean"]) | {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(info))
    _refused(path, "holds more than tensors and plain values")


@pytest.mark.slow
def test_a_checkpoint_whose_sha256_differs_from_its_json_is_refused(exports, tmp_path):
    path = tmp_path / "changed.pt"
    shutil.copy(exports["mean"], path)
    shutil.copy(exports["mean"].with_suffix(".json"), path.with_suffix(".json"))
    with path.open("ab") as f:
        f.write(b"\0")
    _refused(path, "does not match the sha256")


def _statistics(seed: int, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(200, dim, generator=gen, dtype=torch.float64) * (1 + seed) + seed
    return features.mean(0), features.T.cov()


def test_a_one_member_mixture_is_exactly_that_member():
    mean, cov = _statistics(1)
    mixed_mean, mixed_cov = mixture_statistics([(mean, cov)], [1.0])
    assert torch.equal(mixed_mean, mean) and torch.equal(mixed_cov, cov)
    reference = _statistics(0)
    assert frechet_distance(mixed_mean, mixed_cov, *reference) == frechet_distance(mean, cov, *reference)
    # Zero-weight members change nothing either.
    assert torch.equal(mixture_statistics([(mean, cov), _statistics(2)], [1.0, 0.0])[1], cov)


def test_mixture_statistics_are_those_of_the_pooled_samples():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(1000, 4, generator=gen, dtype=torch.float64) * 2 + 3
    pooled = torch.cat([a, b])

    def moments(x):  # biased covariance, so that pooling is exact
        return x.mean(0), x.T.cov(correction=0)

    mean, cov = mixture_statistics([moments(a), moments(b)], [0.75, 0.25])
    assert torch.allclose(mean, pooled.mean(0)) and torch.allclose(cov, pooled.T.cov(correction=0))


def test_greedy_selection_never_ends_above_the_best_single_member():
    reference = _statistics(0)
    candidates = [_statistics(seed) for seed in (3, 1, 2, 5)]

    def fid(mean, cov):
        return frechet_distance(mean, cov, *reference)

    singles = [fid(*s) for s in candidates]
    selection = greedy_mixture(candidates, fid, rounds=10)
    assert selection.history[0] == min(singles)
    assert selection.fid <= min(singles)
    assert sum(selection.weights) == pytest.approx(1.0)
    assert selection.fid == pytest.approx(fid(*mixture_statistics(candidates, selection.weights)))
    # Two halves of one distribution: the mixture of both beats either alone.
    halves = [(reference[0] + 1, reference[1]), (reference[0] - 1, reference[1])]
    both = greedy_mixture(halves, fid, rounds=4)
    assert both.weights == [0.5, 0.5] and both.fid < min(fid(*h) for h in halves)


@pytest.fixture(scope="module")
def empty_storage(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('empty') / 'genopt.db'}"
    study = optuna.create_study(study_name="nothing-complete", storage=url)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    return url


BAD = {
    "missing study": (
        ["ensemble", "--study", "no-such-study", "--storage", "EMPTY"],
        "no study 'no-such-study'",
    ),
    "top-k below 1": (["ensemble", "--study", STUDY, "--top-k", "0"], "--top-k: '0' must be at least 1"),
    "no complete trial": (
        ["ensemble", "--study", "nothing-complete", "--storage", "EMPTY"],
        "has no COMPLETE trial with a stored checkpoint",
    ),
    "unknown label": (["sample", "--checkpoint", "MIXTURE", "--label", "12"], "unknown label 12"),
    "missing checkpoint": (["sample", "--checkpoint", "/no/such/ensemble.pt"], "no ensemble checkpoint at"),
    "out not .pt": (["ensemble", "--study", STUDY, "--out", "x.json"], "--out must end in .pt"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_exits_nonzero_with_one_line(case, empty_storage, exports, tmp_path):
    args, message = BAD[case]
    args = [{"EMPTY": empty_storage, "MIXTURE": str(exports["mixture"])}.get(a, a) for a in args]
    if args[0] == "sample":
        args += ["--out", str(tmp_path / "grid.png")]
    result = genopt(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "grid.png").exists()
