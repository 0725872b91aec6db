"""The weight files (genopt.checkpoints): an export loads and samples with torch alone, and the study
side reads both formats without the ensemble package."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genopt.checkpoints import (
    load_trial_checkpoint,
    read_description,
    read_export,
    save_trial_checkpoint,
    write_description,
)
from genopt.ensemble.build import EnsembleBuild, Member
from genopt.ensemble.export import save_ensemble
from genopt.ensemble.generator import EnsembleGenerator, load_ensemble
from genopt.errors import GenoptError
from genopt.models import Generator, GeneratorConfig

OLD_EXPORT = Path(__file__).parent / "data" / "old_cgan_study" / "old-export.pt"


def tiny_generator(seed: int, *, num_classes: int = 10) -> Generator:
    torch.manual_seed(seed)
    return Generator(GeneratorConfig(8, (16,), (1, 28, 28), num_classes)).eval()


def same_weights(a: Generator, b: Generator) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A mixture of two untrained tiny cGAN generators, written by the writer `genopt ensemble` uses."""
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    members = [Member(3, 50.0, tiny_generator(0)), Member(1, 60.0, tiny_generator(1))]
    ensemble = EnsembleGenerator([m.generator for m in members], [0.75, 0.25], mode="mixture")
    scores = {
        kind: {"validation": {"fid": 50.0}, "test": {"fid": 51.0}} for kind in ("best_single", "mixture")
    }
    metadata = {"study": "tiny", "objective": "fid", "best_single_trial": 3, "fid_samples": 100}
    build = EnsembleBuild(ensemble, members, "fid", scores, [0.75, 0.25], members, metadata)
    save_ensemble(build, path=path)
    return path


def test_loading_an_export_and_sampling_imports_neither_optuna_nor_sqlalchemy(export, tmp_path):
    code = (
        "import sys, torch, genopt\n"
        "for path, out in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    e = genopt.load_ensemble(path)\n"
        "    torch.save(e.sample(6, generator=torch.Generator().manual_seed(5)), out)\n"
        "loaded = sorted(m for m in ('optuna', 'sqlalchemy') if m in sys.modules)\n"
        "assert not loaded, f'loading an export imported {loaded}'\n"
    )
    args = [str(export), str(tmp_path / "new.pt"), str(OLD_EXPORT), str(tmp_path / "old.pt")]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for path, out in ((export, "new.pt"), (OLD_EXPORT, "old.pt")):
        images = torch.load(tmp_path / out, weights_only=True)
        assert images.shape == (6, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
        expected = load_ensemble(path).sample(6, generator=torch.Generator().manual_seed(5))
        assert torch.equal(images, expected)


def test_an_export_keeps_its_members_weights_and_description(export):
    ensemble = load_ensemble(export)
    assert ensemble.mode == "mixture" and ensemble.weights == [0.75, 0.25]
    assert same_weights(ensemble.members[1], tiny_generator(1))
    assert [m["trial_number"] for m in ensemble.metadata["members"]] == [3, 1]
    assert "state_dict" not in ensemble.metadata["members"][0]
    described = read_description(export)
    assert described.members == [(3, 0.75), (1, 0.25)] and described.objective == "fid"


def test_an_export_whose_weights_do_not_fit_its_config_is_refused_in_one_line(export, tmp_path):
    checkpoint, _ = read_export(export)
    checkpoint["members"][0]["generator_config"]["noise_dim"] = 9
    path = tmp_path / "misfit.pt"
    torch.save(checkpoint, path)
    write_description(path, {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    with pytest.raises(GenoptError, match="member 0 does not fit its own generator config") as caught:
        load_ensemble(path)
    assert "\n" not in str(caught.value)


def test_a_trial_checkpoint_is_not_read_as_an_export_nor_the_reverse(export, tmp_path):
    trial = tmp_path / "trial.pt"
    save_trial_checkpoint(trial, tiny_generator(2), epoch=4)
    generator, metadata = load_trial_checkpoint(trial, name="trial 2's checkpoint")
    assert metadata == {"format": "genopt-generator/1", "epoch": 4}
    assert same_weights(generator, tiny_generator(2))
    write_description(trial, {"sha256": hashlib.sha256(trial.read_bytes()).hexdigest()})
    with pytest.raises(GenoptError, match="is not a genopt-ensemble/1 checkpoint"):
        read_export(trial)
    with pytest.raises(GenoptError, match="export's checkpoint is not a genopt-generator/1 file"):
        load_trial_checkpoint(export, name="the export's checkpoint")


def test_the_study_side_imports_no_ensemble_module():
    code = (
        "import sys, genopt.study.runner, genopt.study.init_from, genopt.study.objective\n"
        "assert not [m for m in sys.modules if m.startswith('genopt.ensemble')], sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
