"""Workers behind ``genopt proxy`` (grpc://HOST:PORT): refused in one line when no genopt proxy answers,
patient with a restarted proxy, and, on a real PostgreSQL server, a worker SIGKILLed mid-trial has its
trial failed by the proxy and retried by the other worker."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
import torch
from cli_runner import GENOPT, article_spec, pause_env, run_main, tiny_budget
from optuna.trial import TrialState

from genopt.errors import GenoptError
from genopt.study.artifacts.stores import artifact_store
from genopt.study.storage import optuna_private, proxy, proxy_client
from genopt.study.storage.database import open_storage

needs_grpc = pytest.mark.skipif(
    importlib.util.find_spec("grpc") is None, reason="gRPC is not installed (the grpc extra)"
)
# Short heartbeats, so a killed worker's trial is found stale within seconds; the proxy's are the workers'.
FAST_HEARTBEAT = {"GENOPT_HEARTBEAT_INTERVAL": "1", "GENOPT_HEARTBEAT_GRACE": "4"}
STUDY = "proxy-gan"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("url", ["grpc://", "grpc://127.0.0.1:port", "grpc://127.0.0.1:13000/db"])
def test_a_malformed_grpc_url_is_refused(url):
    with pytest.raises(GenoptError, match=r"use grpc://HOST:PORT"):
        open_storage(url)


def test_the_proxys_line_never_shows_the_database_password():
    from genopt.study.storage.database import shown_url

    assert shown_url("postgresql://genopt:s3cret@db:5432/genopt") == "postgresql://genopt:***@db:5432/genopt"
    assert shown_url("sqlite:///storage/genopt.db") == "sqlite:///storage/genopt.db"


@pytest.mark.parametrize("storage", ["journal:///tmp/study.log", "grpc://127.0.0.1:13000"])
def test_the_proxy_serves_a_database_only(storage, capfd):
    code, err = run_main(["proxy", "--storage", storage, "--port", "0"], capfd)
    assert code == 2
    assert err.splitlines() == [
        f"genopt proxy: error: genopt proxy cannot serve {storage}: Optuna's gRPC proxy serves a database "
        "(postgresql://, mysql:// or sqlite:///)"
    ]


@needs_grpc
def test_a_grpc_url_where_no_proxy_answers_is_refused_in_one_line(monkeypatch, capfd):
    monkeypatch.setattr(proxy_client, "CONNECT_WAIT_S", 1.0)
    url = f"grpc://127.0.0.1:{free_port()}"
    code, err = run_main(["report", "--study", "s", "--storage", url], capfd)
    assert code == 2
    assert err.splitlines() == [
        f"genopt report: error: cannot open storage {url}: no genopt proxy answered within 1 s: "
        f"start one with genopt proxy --storage URL --port {url.rsplit(':', 1)[1]}"
    ]


@needs_grpc
def test_optunas_own_proxy_is_refused_since_it_keeps_no_heartbeats():
    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    optuna_private.add_grpc_storage_service(server, optuna.storages.InMemoryStorage())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(GenoptError, match=r"the server there is not a genopt proxy"):
            open_storage(f"grpc://127.0.0.1:{port}")
    finally:
        server.stop(0)


@needs_grpc
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_worker_waits_for_its_proxy_to_come_back(tmp_path, monkeypatch):
    monkeypatch.setenv("GENOPT_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("GENOPT_HEARTBEAT_GRACE", "4")
    url, said = f"sqlite:///{tmp_path / 'proxied.db'}", []
    first = proxy.Proxy(url, host="127.0.0.1", port=0, out=said.append)
    first.start()
    storage = open_storage(f"grpc://127.0.0.1:{first.port}")
    assert storage.get_heartbeat_interval() == 1  # the proxy's
    study = optuna.create_study(study_name="patient", storage=storage)
    trial = study.ask()
    first.stop()

    restarted = []

    def restart() -> None:
        time.sleep(1.5)
        again = proxy.Proxy(url, host="127.0.0.1", port=first.port, out=said.append)
        again.start()
        restarted.append(again)

    thread = threading.Thread(target=restart)
    began = time.monotonic()
    thread.start()
    try:
        # Sent while no proxy listens: it waits for the restarted one, and lands there.
        study.tell(trial, 0.5)
        assert time.monotonic() - began > 1.0
    finally:
        thread.join()
        restarted[0].stop()
    stored = optuna.load_study(study_name="patient", storage=open_storage(url)).trials
    assert [(t.state, t.value) for t in stored] == [(TrialState.COMPLETE, 0.5)]
    assert [line.split(";")[0] for line in said] == [
        f"genopt proxy: serving {url} at grpc://127.0.0.1:{first.port}"
    ] * 2


@needs_grpc
@pytest.mark.slow
def test_a_worker_killed_behind_the_proxy_is_reaped_there_and_retried_by_the_other(postgres_url, tmp_path):
    lines: list[str] = []
    served = subprocess.Popen(
        [GENOPT, "proxy", "--storage", postgres_url, "--port", "0"],
        env=os.environ | FAST_HEARTBEAT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers: list[subprocess.Popen] = []
    try:
        first = served.stdout.readline()
        port = re.search(r"at grpc://127\.0\.0\.1:(\d+);", first).group(1)
        threading.Thread(target=lambda: lines.extend(served.stdout), daemon=True).start()
        url = f"grpc://127.0.0.1:{port}"
        budget = [*article_spec(), *tiny_budget()]
        # The first worker makes the study, runs trial 0, and waits in trial 1 (running, beating through
        # the proxy) at the pause hook; the second, started then, waits in trial 2 likewise.
        pauses = [tmp_path / "pause-1", tmp_path / "pause-2"]
        commands = [
            [GENOPT, "study", "--study", STUDY, "--storage", url, "--trials", "3", *budget],
            [GENOPT, "worker", "--study", STUDY, "--storage", url, "--trials", "2", "--no-progress"],
        ]
        for number, (pause, command) in enumerate(zip(pauses, commands, strict=True), 1):
            env = pause_env(pause, trial=number)
            log = (tmp_path / f"worker{number}.log").open("w")
            workers.append(
                subprocess.Popen(command, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT)
            )
            wait_for(pause.exists, timeout=300)
        killed, survivor = workers
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        wait_for(lambda: any("queued again" in line for line in lines), timeout=60)
        pauses[1].unlink()  # the survivor finishes its trial, then runs the retry
        assert survivor.wait(timeout=300) == 0, (tmp_path / "worker2.log").read_text()
    finally:
        for process in [*workers, served]:
            process.kill()
            process.wait()

    (reaped,) = [line for line in lines if "queued again" in line]
    retry = int(re.search(r"queued again as trial (\d+)", reaped).group(1))
    assert f"study {STUDY} trial 1: no sign of life for 4 s: FAIL" in reaped
    trials = optuna.load_study(study_name=STUDY, storage=open_storage(postgres_url)).trials
    states = {t.number: t.state for t in trials}
    # The survivor's own trial beat through the proxy all along its wait: never failed.
    assert states == {
        0: TrialState.COMPLETE,
        1: TrialState.FAIL,
        2: TrialState.COMPLETE,
        retry: TrialState.COMPLETE,
    }
    assert trials[retry].system_attrs["failed_trial"] == 1
    assert trials[retry].params == trials[1].params
    store = artifact_store()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            with store.open_reader(t.user_attrs["checkpoint"]) as f:
                assert torch.load(f, weights_only=True)["trial_number"] == t.number


@needs_grpc
def test_a_worker_whose_proxy_stays_away_stops_with_one_line(tmp_path):
    served = proxy.Proxy(f"sqlite:///{tmp_path / 'gone.db'}", host="127.0.0.1", port=0, out=lambda line: None)
    served.start()
    url = f"grpc://127.0.0.1:{served.port}"
    storage = proxy_client.connect(url, wait=1.0)
    storage.get_all_studies()
    served.stop()
    with pytest.raises(
        GenoptError, match=r"^lost the genopt proxy at grpc://127\.0\.0\.1:\d+: no answer for 1 s"
    ):
        storage.get_all_studies()
