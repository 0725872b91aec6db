"""``genopt proxy``: a storage served to many workers over Optuna's gRPC proxy, heartbeats included.

The proxy stands next to the database and holds the only connections to it; workers open
``grpc://HOST:PORT`` (``genopt.study.storage.proxy_client``) and hold one gRPC channel each.
Optuna's proxy client (Optuna 5.1) is no heartbeat storage, so genopt adds a small service of its own
beside Optuna's, on the same port, and the proxy does the reaping:

- **Beats go through the proxy.** A worker's trial beats every interval, as on any storage; here a
  beat is one ``genopt.Proxy/Beat`` call, which the proxy only notes. Every second it writes the
  beats it noted to the database's heartbeat table in one transaction, stamped with the database's
  clock (``Beats``): two statements for all its workers, where each worker on the database spends a
  transaction of five per beat. A beat that fails (the proxy is restarting) is skipped; the next one
  comes an interval later.
- **The proxy reaps.** Every interval it fails the RUNNING trials of every study in the storage
  that have shown no sign of life for the grace period and queues each again with its parameters
  (Optuna's ``RetryHeartbeatStaleTrialCallback``, at most 3 retries), as a worker on the database
  does before each trial; workers behind it judge nothing themselves. A trial killed before its
  first beat counts once it has run for the grace period (``database._RDBStorage``). Workers that
  open the database directly keep reaping too, and judge the same heartbeat rows.
- **A restarted proxy waits before it judges.** Beats are skipped while the proxy is down, so after
  a start it lets a grace period and an interval pass (every live worker beats again meanwhile)
  before its first reaping: a proxy restart never fails a live trial.
- **The proxy's settings are the workers'.** A worker asks the proxy for the heartbeat interval
  (``genopt.Proxy/Settings``) instead of reading its own ``GENOPT_HEARTBEAT_INTERVAL``; the grace
  period and retries are the proxy's alone. A plain Optuna proxy has no such service, and a worker
  refuses it in one line.

The proxy speaks gRPC without TLS or authentication, as Optuna's does: anyone who reaches its port
can read and change every study. Keep it on a private network (a Kubernetes ClusterIP Service, a
cluster's internal network); deploy/ has templates.
"""

from __future__ import annotations

import copy
import json
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from genopt.errors import GenoptError
from genopt.study.storage import database, optuna_private
from genopt.study.storage.proxy_client import SERVICE, grpc_module, target

# Threads that answer calls; each holds at most one database connection at a time, and the proxy
# opens at most this many plus two (the reaper, and one spare).
PROXY_THREADS = 16
STOP_GRACE_S = 5.0  # calls in flight at a SIGTERM get this long to finish
BEAT_FLUSH_S = 1.0  # how often the beats received are written to the database, all in one transaction
# Workers ping during calls every 10 s (proxy_client): allow it.
_SERVER_OPTIONS = [
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def _say(line: str) -> None:
    print(line, flush=True)


class Proxy:
    """A running genopt proxy: Optuna's gRPC storage service, genopt's heartbeat service and the
    reaper, all on one storage; ``stop`` ends it.

    Args:
        storage_url: the database (``postgresql://``, ``mysql://`` or ``sqlite:///``).
        host, port: where to listen (port 0: a free one; ``port`` then says which).
        out: where the proxy's lines go (the start, and each trial it fails and queues again).
    """

    def __init__(
        self, storage_url: str | None, *, host: str, port: int, out: Callable[[str], None] | None = None
    ):
        url = database.resolve_url(storage_url)
        scheme = url.partition("://")[0].split("+")[0]
        if scheme in ("journal", "grpc"):
            raise GenoptError(
                f"genopt proxy cannot serve {url}: Optuna's gRPC proxy serves a database "
                "(postgresql://, mysql:// or sqlite:///)"
            )
        grpc = grpc_module()
        self.url, self.out = url, out or _say
        self.database = database.open_storage(url, connections=PROXY_THREADS + 2)
        # Optuna's cache of finished trials in front of the database, as its proxy's docs ask.
        self.storage = optuna.storages.get_storage(self.database)
        self.interval, self.grace = database.heartbeat_settings()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=PROXY_THREADS), options=_SERVER_OPTIONS)
        optuna_private.add_grpc_storage_service(self.server, self.storage)
        settings = json.dumps({"interval": self.interval, "grace": self.grace}).encode()
        handlers = {
            "Beat": grpc.unary_unary_rpc_method_handler(self._beat),
            "Settings": grpc.unary_unary_rpc_method_handler(lambda request, context: settings),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        try:
            self.port = self.server.add_insecure_port(target(host, port))
        except RuntimeError as exc:
            raise GenoptError(f"genopt proxy cannot listen on {target(host, port)}: {exc}") from None
        self.host = host
        self.beats = Beats(self.database)
        self.reaper = Reaper(
            self.storage, self.database, interval=self.interval, grace=self.grace, out=self.out
        )

    def _beat(self, request: bytes, context) -> bytes:
        self.beats.add(int(request))
        return b""

    def start(self) -> None:
        self.beats.start()
        self.server.start()
        self.reaper.start()
        served, address = database.shown_url(self.url), target(self.host, self.port)
        self.out(
            f"genopt proxy: serving {served} at grpc://{address}; trials beat every {self.interval} s, and "
            f"one silent for {self.grace} s is failed and queued again (checked every {self.interval} s, "
            f"from {self.grace + self.interval} s after this start)"
        )

    def stop(self) -> None:
        """Stop listening, let calls in flight finish (``STOP_GRACE_S``), and stop reaping."""
        self.reaper.stopping.set()
        self.server.stop(STOP_GRACE_S).wait()
        self.reaper.join()
        self.beats.stopping.set()
        self.beats.join()


def serve(storage_url: str | None, *, host: str, port: int, out: Callable[[str], None] | None = None) -> str:
    """Run a genopt proxy until SIGINT or SIGTERM; the signal's name.

    Raises:
        GenoptError: the storage cannot be opened or served, or the address cannot be listened on.
    """
    from genopt.study.stop import Stop

    out = out or _say
    # Optuna's heartbeat retry and proxy are "experimental": the warnings say nothing to a user.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    proxy = Proxy(storage_url, host=host, port=port, out=out)
    stop, signalled = Stop(), threading.Event()
    with stop.on_signals(lambda signum: signalled.set()):
        proxy.start()
        while not signalled.wait(1.0):
            pass
    proxy.stop()
    out(f"genopt proxy: stopped by {stop.why}")
    return stop.why


class Beats(threading.Thread):
    """The workers' beats, written together: every ``BEAT_FLUSH_S`` one transaction stamps every trial
    that beat since with the database's clock; beats the database refused wait for the next time."""

    def __init__(self, database_storage):
        super().__init__(name="genopt-beats", daemon=True)
        self.database = database_storage
        self.stopping = threading.Event()
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._pending.add(trial_id)

    def run(self) -> None:
        while not self.stopping.wait(BEAT_FLUSH_S):
            self.flush()
        self.flush()

    def flush(self) -> None:
        with self._lock:
            trial_ids, self._pending = self._pending, set()
        try:
            optuna_private.record_heartbeats(self.database, trial_ids)
        except Exception:  # the database is away: these beats go with the next ones
            with self._lock:
                self._pending |= trial_ids


class Reaper(threading.Thread):
    """Fails the storage's stale trials every ``interval`` seconds and queues each again, as a worker
    on the database would before its next trial; the first round waits ``grace + interval``."""

    def __init__(self, storage, database_storage, *, interval: int, grace: int, out: Callable[[str], None]):
        super().__init__(name="genopt-reaper", daemon=True)
        self.storage, self.database = storage, database_storage
        self.interval, self.grace, self.out = interval, grace, out
        self.stopping = threading.Event()
        self._studies: dict[str, tuple[int, optuna.Study]] = {}

    def run(self) -> None:
        if self.stopping.wait(self.grace + self.interval):
            return
        while True:
            try:
                self.reap()
            except Exception as exc:  # the database is away: try again next round
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.out(f"genopt proxy: could not look for stale trials: {reason}")
            if self.stopping.wait(self.interval):
                return

    def reap(self) -> list[str]:
        """Fail every stale trial of every study and queue it again; the lines said."""
        said = []
        callback = self.database.get_heartbeat_stale_trial_callback()
        for summary in self.storage.get_all_studies():
            name = summary.study_name
            if name not in self._studies:
                study_id = self.storage.get_study_id_from_name(name)
                self._studies[name] = (study_id, optuna.load_study(study_name=name, storage=self.storage))
            study_id, study = self._studies[name]
            for trial_id in self.database.stale_trial_ids(study_id):
                try:
                    if not self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                        continue
                except UpdateFinishedTrialError:  # a worker on the database failed it first
                    continue
                failed = copy.deepcopy(self.storage.get_trial(trial_id))
                with warnings.catch_warnings():  # retry_history is "experimental"
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    callback(study, failed)
                    retries = [
                        t.number
                        for t in study.get_trials(deepcopy=False)
                        if RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] == [failed.number]
                    ]
                again = (
                    f"queued again as trial {retries[0]}" if retries else "not queued again (retried enough)"
                )
                said.append(
                    f"genopt proxy: study {name} trial {failed.number}: no sign of life for {self.grace} s: "
                    f"FAIL, {again}"
                )
                self.out(said[-1])
        return said
