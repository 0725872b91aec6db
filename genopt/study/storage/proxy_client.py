"""A worker's storage behind a genopt proxy (``grpc://HOST:PORT``): Optuna's gRPC proxy client with
genopt's heartbeats, patient with a proxy that restarts.

``connect`` (through ``genopt.study.storage.database.open_storage``) checks that a genopt proxy
answers and asks it for the heartbeat interval; a trial then beats through it (``genopt.Proxy/Beat``)
and the proxy, not the worker, fails stale trials (``genopt.study.storage.proxy``).

A worker whose proxy goes away (killed, restarted, moved to another node) waits for it: each call
that finds no proxy is sent again once the channel is back, for up to ``PROXY_WAIT_S``. A call
that may have reached the proxy before it died is sent again too; each storage call is then
harmless to repeat but two: a trial's state change that the first call made is recognised (the
trial is already in that state), and a new trial the first call created is left RUNNING without a
heartbeat, so the proxy fails it after the grace period and queues it again (nothing is lost,
nothing runs twice).
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable
from urllib.parse import urlsplit

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from genopt.errors import GenoptError
from genopt.study.storage import optuna_private

DEFAULT_PORT = 13000  # Optuna's proxy's default
SERVICE = "genopt.Proxy"  # genopt's gRPC service beside Optuna's (optuna.StorageService)
CONNECT_WAIT_S = 10.0  # how long opening grpc://... waits for a proxy that is starting
PROXY_WAIT_S = 300.0  # how long a worker waits for its proxy to come back before it gives up

# Reconnect within 2 s of a restarted proxy's return (gRPC's default backoff grows to 2 minutes),
# and find a proxy whose machine vanished mid-call within 15 s (keepalive pings during calls).
_CLIENT_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


def grpc_module():
    """The ``grpc`` package, or one line saying how to install it.

    Raises:
        GenoptError: grpcio is not installed.
    """
    try:
        import grpc
    except ImportError:
        raise GenoptError(
            "the storage proxy needs gRPC: install it with pip install 'genopt[grpc]'"
        ) from None
    return grpc


def parse_url(url: str) -> tuple[str, int]:
    """(host, port) of ``grpc://HOST:PORT`` (port 13000 when left out).

    Raises:
        GenoptError: the URL has no host, a port that is no number, or a path.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        port = None
    if parts.scheme != "grpc" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise GenoptError(f"cannot open storage {url}: use grpc://HOST:PORT, the address of a genopt proxy")
    return parts.hostname, port


def target(host: str, port: int) -> str:
    """gRPC's ``host:port`` (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyStorage(optuna_private.GrpcStorageClient, optuna_private.Heartbeat):
    """Optuna's gRPC proxy client with genopt's heartbeats, and patient with a restarting proxy.

    Args:
        host, port: the genopt proxy's address.
        wait: seconds a call waits for an unreachable proxy before ``GenoptError``.
    """

    def __init__(self, *, host: str, port: int, wait: float = PROXY_WAIT_S):
        self.address = target(host, port)
        self.wait = wait
        self.interval: int | None = None  # the proxy's heartbeat interval, once asked (``handshake``)
        self.calls = threading.local()  # per thread: was the last storage call sent twice?
        self._gave_up = False
        with warnings.catch_warnings():  # "experimental" since Optuna 4.2; says nothing to a user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=host, port=port)

    def make_channel(self):
        grpc = grpc_module()
        channel = grpc.insecure_channel(self.address, options=_CLIENT_OPTIONS)
        self._beat = channel.unary_unary(f"/{SERVICE}/Beat")
        self._settings = channel.unary_unary(f"/{SERVICE}/Settings")
        return channel

    def wrap_stub(self, stub):
        return _Patient(stub, self)

    def handshake(self, timeout: float | None = None) -> dict:
        """The proxy's heartbeat settings, waiting up to ``timeout`` (default ``CONNECT_WAIT_S``) for it
        to answer.

        Raises:
            grpc.RpcError: no proxy answered (DEADLINE_EXCEEDED), or a server without genopt's
                service did (UNIMPLEMENTED: Optuna's own proxy).
        """
        timeout = CONNECT_WAIT_S if timeout is None else timeout
        settings = json.loads(self._settings(b"", timeout=timeout, wait_for_ready=True))
        self.interval = int(settings["interval"])
        # A beat may wait in a busy proxy's queue for up to the grace period: late, it still counts.
        self.beat_timeout = float(settings["grace"])
        return settings

    # Optuna's heartbeat interface: beat through the proxy, which also does the judging.

    def record_heartbeat(self, trial_id: int) -> None:
        # Sent without waiting for the answer: each beat leaves on time however long a busy proxy takes
        # to answer the one before. A missed beat is harmless (the grace period spans several).
        beat = self._beat.future(str(trial_id).encode(), timeout=self.beat_timeout)
        beat.add_done_callback(_quiet)

    def stale_trial_ids(self, study_id: int) -> list[int]:
        return []  # the proxy fails stale trials, next to the database

    def get_heartbeat_interval(self) -> int | None:
        return self.interval

    def get_heartbeat_stale_trial_callback(self) -> Callable | None:
        return None

    # A state change sent twice (the proxy died after making it, before answering).

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        self.calls.repeated = False
        try:
            return super().set_trial_state_values(trial_id, state, values)
        except UpdateFinishedTrialError:
            # The first call finished the trial as asked: the second found it finished. Taking a
            # WAITING trial (to RUNNING) is not recognised so, since another worker may have taken
            # it: the answer stays "not taken", and a trial this call did take is left RUNNING
            # without a beat, for the proxy to fail and queue again.
            if not self.calls.repeated or not state.is_finished():
                raise
            trial = self.get_trial(trial_id)
            if trial.state != state or (values is not None and list(trial.values or []) != list(values)):
                raise
            return True


def _quiet(beat) -> None:
    """A beat's answer, read and dropped: one that failed (no proxy) is just a missed beat."""
    beat.exception()


class _Patient:
    """A proxy client's stub whose every call waits for an unreachable proxy (gRPC UNAVAILABLE) to
    come back, for up to the storage's ``wait``, and is then sent again."""

    def __init__(self, stub, storage: ProxyStorage):
        self._stub = stub
        self._client = storage

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        storage = self._client
        grpc = grpc_module()

        def call(request, **kwargs):
            deadline, waited = time.monotonic() + storage.wait, False
            while True:
                try:
                    return method(request, **kwargs)
                except grpc.RpcError as exc:
                    left = deadline - time.monotonic()
                    # Unreachable; or, sent again, still unreachable when the wait ran out.
                    lost = exc.code() == grpc.StatusCode.UNAVAILABLE or (
                        waited and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    )
                    if not lost:
                        raise
                    if storage._gave_up or left <= 0:
                        storage._gave_up = True
                        raise GenoptError(
                            f"lost the genopt proxy at grpc://{storage.address}: no answer for "
                            f"{storage.wait:.0f} s; its running trial is failed and queued again once "
                            "the proxy is back: start the proxy, then rerun"
                        ) from None
                    storage.calls.repeated, waited = True, True
                    # Sent again once the channel is ready: gRPC reconnects every 0.5-2 s meanwhile.
                    kwargs = kwargs | {"wait_for_ready": True, "timeout": left}

        return call


def connect(url: str, *, wait: float = PROXY_WAIT_S) -> ProxyStorage:
    """The storage behind the genopt proxy at ``grpc://HOST:PORT``, checked to answer.

    Raises:
        GenoptError: gRPC is not installed, no proxy answers within ``CONNECT_WAIT_S``, or the server
            there is not a genopt proxy.
    """
    host, port = parse_url(url)
    grpc = grpc_module()
    storage = ProxyStorage(host=host, port=port, wait=wait)
    try:
        storage.handshake()
    except grpc.RpcError as exc:
        storage.close()
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise GenoptError(
                f"cannot open storage {url}: the server there is not a genopt proxy (Optuna's own proxy "
                "keeps no heartbeats): serve the storage with genopt proxy --storage URL"
            ) from None
        raise GenoptError(
            f"cannot open storage {url}: no genopt proxy answered within {CONNECT_WAIT_S:.0f} s: "
            f"start one with genopt proxy --storage URL --port {port}"
        ) from None
    return storage
