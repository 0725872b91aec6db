"""Many machines, no shared disk: a study's artifacts in S3-compatible object storage.

The S3 API is moto's standalone server on 127.0.0.1 (tests/s3_server.py) with its credential checks
on; the study database is a real PostgreSQL server (tests/pg_server.py). A "machine" is a working
folder with its own ``GENOPT_HOME`` (database, artifacts, caches): the machines share nothing but
the PostgreSQL URL and the ``s3://`` URL. Each gets a copy of the data cache, as each real machine
needs the data (docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from cli_runner import GENOPT, ROOT, genopt, run_main, tiny_budget
from optuna.trial import TrialState
from s3_server import free_port, s3_server

from genopt.study.artifacts.feature_net import artifact_id
from genopt.study.artifacts.stores import ArtifactLocation, artifact_store
from genopt.study.artifacts.upload import upload
from genopt.study.optimize import optimize
from genopt.study.record.attrs import (
    CHECKPOINT_ATTR,
    FEATURE_SHA256_ATTR,
    HISTORY_ATTR,
    SAMPLES_ATTR,
    TRIAL_FEATURE_SHA256_ATTR,
)
from genopt.study.record.note import reproduce_command

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BUDGET = tiny_budget()


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@dataclass(frozen=True)
class Machine:
    folder: Path
    env: dict[str, str]


def machine(root: Path, name: str, genopt_home: str, s3) -> Machine:
    """A working folder of its own, its ``GENOPT_HOME`` inside, the data cache copied in: no feature
    network and no reference statistics, so each scores with the study's own network."""
    folder = root / name
    # not the files another test process is writing (a temporary file, a lock): they come and go
    skip = shutil.ignore_patterns(".*.tmp", "*.lock", "features", "fid")
    shutil.copytree(Path(genopt_home) / "cache", folder / "home" / "cache", ignore=skip)
    return Machine(folder, s3.env | {"GENOPT_HOME": str(folder / "home")})


def completed_by(stdout: str) -> set[int]:
    return {int(n) for n in re.findall(r"^trial +(\d+) +complete", stdout, flags=re.M)}


@pytest.mark.slow
def test_two_machines_share_one_study_through_postgresql_and_s3_alone(
    s3, postgres_url, tiny_study, genopt_home, tmp_path
):
    url = f"s3://{s3.bucket}/two-machines"
    spec = tmp_path / "spec.toml"  # the article's MLPs, 4 checkpoints kept
    spec.write_text(
        (ROOT / "studies" / "cgan-article.toml")
        .read_text()
        .replace("keep_checkpoints = 5", "keep_checkpoints = 4")
    )
    a, b, c = (machine(tmp_path, name, genopt_home, s3) for name in "abc")
    study = ["--study", "shared", "--storage", postgres_url]

    made = genopt("study", "--spec", str(spec), *study, "--artifact-store", url, "--trials", "1", *BUDGET,
                  "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64", cwd=a.folder, env=a.env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    # Both machines join at once; neither names the store: the study recorded it.
    workers = [
        subprocess.Popen(
            [GENOPT, "worker", *study, "--trials", "2", "--no-progress"],
            cwd=m.folder,
            env=os.environ | m.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for m in (a, b)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    ran_a, ran_b = completed_by(made.stdout) | completed_by(outputs[0][0]), completed_by(outputs[1][0])
    assert len(ran_a) == 3 and len(ran_b) == 2

    loaded = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = loaded.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert loaded.user_attrs["artifact_store"] == f"{url}/"
    assert s3.secret_key not in json.dumps(loaded.user_attrs)
    for m in (a, b):  # nothing went to a machine's own folder
        assert not (m.folder / "home" / "artifacts").exists()
        assert not (m.folder / "storage").exists()

    # Every grid and history is in the bucket; retention left exactly keep_checkpoints = 4 checkpoints,
    # the 4 best trials'; nothing else is there.
    # Beside them, the study's feature network, which scored every trial of both machines.
    ids = {key.removeprefix("two-machines/") for key in s3.keys("two-machines/")}
    files = {t.user_attrs[attr] for t in trials for attr in (SAMPLES_ATTR, HISTORY_ATTR)}
    checkpoints = {t.user_attrs[CHECKPOINT_ATTR] for t in trials} & ids
    best4 = sorted(trials, key=lambda t: (t.value, t.number))[:4]
    assert checkpoints == {t.user_attrs[CHECKPOINT_ATTR] for t in best4}
    sha = loaded.user_attrs[FEATURE_SHA256_ATTR]
    assert ids == files | checkpoints | {artifact_id(sha)}
    assert {t.user_attrs[TRIAL_FEATURE_SHA256_ATTR] for t in trials} == {sha}
    for out in (made.stdout, *(out for out, _ in outputs)):
        assert re.findall(r"^feature network sha256 (\w+):", out, flags=re.M) == [sha]

    # A third machine exports the ensemble from members both machines trained, samples and reports.
    export = c.folder / "shared.pt"
    ensemble = genopt("ensemble", *study, "--top-k", "4", "--mode", "mean", "--out", str(export),
                      cwd=c.folder, env=c.env)  # fmt: skip
    assert ensemble.returncode == 0, ensemble.stderr
    described = json.loads(export.with_suffix(".json").read_text())
    assert described["feature_net_sha256"] == sha
    members = {m["trial_number"] for m in described["members"]}
    assert members == {t.number for t in best4}
    assert members & ran_a and members & ran_b
    grid = c.folder / "grid.png"
    sample = genopt(
        "sample", "--checkpoint", str(export), "--n", "10", "--out", str(grid), cwd=c.folder, env=c.env
    )
    assert sample.returncode == 0, sample.stderr
    assert grid.read_bytes().startswith(PNG_MAGIC)
    report = genopt("report", *study, "--out", str(c.folder / "report"), cwd=c.folder, env=c.env)
    assert report.returncode == 0, report.stderr
    best = best4[0]
    assert (c.folder / "report" / "best-samples.png").read_bytes() == stored_grid(s3, best)

    # The dashboard serves a trial's grid from the bucket.
    dashboard = subprocess.Popen(
        [GENOPT, "dashboard", "--storage", postgres_url, "--port", "0", "--artifact-store", url],
        cwd=c.folder, env=os.environ | c.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = dashboard.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard", line)
        assert match, f"no URL printed: {line!r}"
        base = f"http://127.0.0.1:{match.group(1)}"
        summaries = json.loads(http_get(f"{base}/api/studies"))["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "shared")
        detail = json.loads(http_get(f"{base}/api/studies/{study_id}"))
        trial = next(t for t in detail["trials"] if t["number"] == best.number)
        png = http_get(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{best.user_attrs[SAMPLES_ATTR]}")
        assert png == stored_grid(s3, best)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def http_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def stored_grid(s3, trial) -> bytes:
    """The sample grid ``trial`` uploaded, as the bucket holds it."""
    key = f"two-machines/{trial.user_attrs[SAMPLES_ATTR]}"
    return s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def silent_endpoint():
    """A port that accepts connections and never answers: an endpoint that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        held, stop = [], threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        stop.set()
        thread.join()
        for conn in held:
            conn.close()


# name: (the --artifact-store value, environment changes, the refusal's words); {bucket} is the server's.
BAD_STORES = {
    "no such bucket": ("s3://no-such-bucket/x", {}, "no bucket 'no-such-bucket'"),
    "wrong credentials": ("s3://{bucket}/x", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "access denied"),
    "unknown key id": ("s3://{bucket}/x", {"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY"}, "access denied"),
    "endpoint refuses": ("s3://{bucket}/x", {"AWS_ENDPOINT_URL": "refused"}, "did not answer"),
    "endpoint never answers": ("s3://{bucket}/x", {"AWS_ENDPOINT_URL": "silent"}, "did not answer"),
    "unknown scheme": ("gs://{bucket}/x", {}, "unknown scheme 'gs://'"),
}


@pytest.fixture
def existing(tiny_study, tmp_path):
    """A copy of the tiny study's database: an existing study that a refusal must leave as it is."""
    db = tmp_path / "copy.db"
    shutil.copyfile(tiny_study.url.removeprefix("sqlite:///"), db)
    return f"sqlite:///{db}"


def snapshot(url: str) -> list:
    summaries = optuna.get_all_study_summaries(url)
    studies = [optuna.load_study(study_name=s.study_name, storage=url) for s in summaries]
    return [
        (s.study_name, s.user_attrs, [(t.number, t.state, t.user_attrs) for t in s.trials]) for s in studies
    ]


@pytest.mark.slow  # reads the tiny study
@pytest.mark.parametrize("case", BAD_STORES)
def test_a_bad_artifact_store_is_refused_in_one_line_and_no_study_is_touched(
    case, s3, silent_endpoint, tiny_study, existing, monkeypatch, capfd
):
    value, changes, words = BAD_STORES[case]
    env = s3.env | changes
    if env["AWS_ENDPOINT_URL"] == "refused":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    elif env["AWS_ENDPOINT_URL"] == "silent":
        env["AWS_ENDPOINT_URL"] = silent_endpoint
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    store = value.format(bucket=s3.bucket)
    before = snapshot(existing)
    commands = {
        "study (resumed)": ["study", *tiny_study.args, "--storage", existing, "--trials", "1"],
        "study (new)": ["study", *tiny_study.args, "--storage", existing, "--study", "new", "--trials", "1"],
        "worker": ["worker", "--study", tiny_study.name, "--storage", existing, "--trials", "1"],
        "ensemble": ["ensemble", "--study", tiny_study.name, "--storage", existing],
        "report": ["report", "--study", tiny_study.name, "--storage", existing],
        "dashboard": ["dashboard", "--storage", existing, "--port", "0"],
    }
    if case != "no such bucket":  # every command checks the store the same way: each kind via two
        commands = {k: v for k, v in commands.items() if k in ("study (new)", "worker")}
    for command, args in commands.items():
        code, stderr = run_main([*args, "--artifact-store", store], capfd)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], (command, stderr)
        assert s3.secret_key not in stderr
    assert snapshot(existing) == before


def test_a_store_that_fails_mid_study_fails_that_trial_with_the_reason_and_the_next_trial_retries(
    s3, monkeypatch, tmp_path
):
    for name, text in s3.env.items():
        monkeypatch.setenv(name, text)
    # The bucket is missing (an outage) for trial 0 and back for trial 1.
    store = artifact_store("s3://comes-back/run", check=False)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(4096))

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 1:
            s3.client.create_bucket(Bucket="comes-back")
        trial.set_user_attr(SAMPLES_ATTR, upload(trial, store, str(payload), "application/octet-stream"))
        return float(trial.number)

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'mid.db'}")
    study = optuna.create_study(storage=storage)
    optimize(study, objective, trials=2, store=store, keep=5, progress=False)
    failed, done = study.trials
    assert (failed.state, done.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert failed.user_attrs["reason"].startswith("artifact store failed: s3://comes-back/run/: ")
    assert (
        SAMPLES_ATTR not in failed.user_attrs
        and optuna.artifacts.get_all_artifact_meta(failed, storage=storage) == []
    )
    with store.open_reader(done.user_attrs[SAMPLES_ATTR]) as f:
        assert f.read() == payload.read_bytes()
    assert s3.client.list_objects_v2(Bucket="comes-back")["KeyCount"] == 1
    store.client.close()


def test_an_artifact_store_url_is_recorded_without_its_credentials():
    location = ArtifactLocation.parse("s3://AKIAEXAMPLE:s3cr%2Ft@bucket/some/prefix/")
    assert location.url == "s3://bucket/some/prefix/"
    assert (location.bucket, location.prefix) == ("bucket", "some/prefix/")
    assert location.environment() == {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr/t"}
    assert "s3cr" not in repr(location)
    from genopt.spec import StudySpec

    command = reproduce_command(
        StudySpec(), study_name="s", trials=1, artifact_store="s3://AKIAEXAMPLE:s3cr%2Ft@bucket/some/prefix"
    )
    assert "--artifact-store s3://bucket/some/prefix/" in command and "s3cr" not in command
    assert ArtifactLocation.parse("s3://bucket").prefix == ""
    assert ArtifactLocation.parse("file:///tmp/x").folder == Path("/tmp/x")
    assert ArtifactLocation.parse("relative/store").folder == Path("relative/store").resolve()
