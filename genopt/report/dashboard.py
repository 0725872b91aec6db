"""Serve optuna-dashboard on a study storage, with the artifact store attached, on this machine only.

The dashboard shows a trial's image artifacts (its sample grid) inline and its CSV artifacts (its
per-epoch history) as tables only when it is given the same artifact store the trials wrote to: the
one named, else the one the storage's studies recorded (a folder or an S3 bucket), else
``storage/artifacts``. optuna-dashboard serves them at ``/artifacts/<study>/<trial>/<artifact id>``.
"""

from __future__ import annotations

from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from genopt.errors import GenoptError
from genopt.study.artifacts import stores
from genopt.study.record.records import StudyRecord
from genopt.study.storage.database import open_storage

HOST = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # one line per request would bury the URL
        pass


def make_dashboard_server(
    *, storage_url: str | None = None, port: int = 8080, artifact_store: str | Path | None = None
) -> tuple[WSGIServer, str]:
    """A wsgiref server for optuna-dashboard, bound to 127.0.0.1, and the URL to open.

    Args:
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        port: the port to listen on; 0 picks a free one.
        artifact_store: a folder or ``s3://BUCKET/PREFIX``; default the one the storage's studies
            recorded when they agree, else ``storage/artifacts``.

    Raises:
        GenoptError: the storage cannot be opened, the artifact store cannot be used, or the port
            cannot be bound.
    """
    storage = open_storage(storage_url)
    if artifact_store is None:
        artifact_store = recorded_store(storage)
    app = optuna_dashboard.wsgi(storage, artifact_store=stores.artifact_store(artifact_store))
    try:
        server = make_server(HOST, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise GenoptError(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; try another --port"
        ) from None
    return server, f"http://{HOST}:{server.server_port}/dashboard"


def recorded_store(storage) -> str | None:
    """The artifact store every study in ``storage`` recorded, None when they name none or several."""
    recorded = {
        StudyRecord.from_attrs(s.user_attrs).artifact_store
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    return recorded.pop() if len(recorded) == 1 else None


def serve(
    *, storage_url: str | None = None, port: int = 8080, artifact_store: str | Path | None = None
) -> None:
    """Serve the dashboard until interrupted, after printing its URL."""
    server, url = make_dashboard_server(storage_url=storage_url, port=port, artifact_store=artifact_store)
    print(f"optuna-dashboard on {url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
