"""Serve optuna-dashboard on a study storage, with the artifact store attached, on this machine only.

The dashboard shows a trial's image artifacts (its sample grid) inline and its CSV artifacts (its
per-epoch history) as tables only when it is given the same artifact store the trials wrote to: the
one named, else the one the storage's studies recorded (a folder or an S3 bucket), else
``storage/artifacts``. optuna-dashboard serves them at ``/artifacts/<study>/<trial>/<artifact id>``.

Two things genopt adds to optuna-dashboard's app:

- Each trial's sample grid is its first artifact in the trials' data (``/api/studies/<id>``), the
  rest by name as the trial page lists them. The trial selection shows each selected trial's first
  artifact, so selecting trials shows their grids side by side. (Optuna lists a trial's artifacts
  in the order its storage returns their keys: by random id on SQLite.)
- ``/genopt/compare.png?study=NAME`` (``genopt.study.record.note.comparison_url``): the study's
  best trials side by side (``genopt.report.compare.draw_top``), which the study note shows. It is
  drawn when asked for, again only when the best trials have changed.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from genopt.errors import GenoptError
from genopt.study.artifacts import stores
from genopt.study.record.attrs import SAMPLES_ATTR
from genopt.study.record.note import COMPARISON_PATH
from genopt.study.record.records import StudyRecord
from genopt.study.storage.database import open_storage

HOST = "127.0.0.1"
_STUDY_DETAIL = re.compile(r"/api/studies/\d+")


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
    store = stores.artifact_store(artifact_store)
    app = _GenoptApp(optuna_dashboard.wsgi(storage, artifact_store=store), storage, store)
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


class _GenoptApp:
    """optuna-dashboard's WSGI app with each trial's grid first and the note's comparison picture."""

    def __init__(self, app, storage, store) -> None:
        self.app, self.storage, self.store = app, storage, store
        self.drawn: dict[str, tuple[tuple[int, ...], bytes]] = {}  # study -> (its best trials, PNG)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == COMPARISON_PATH:
            return self.comparison(environ, start_response)
        if environ.get("REQUEST_METHOD") == "GET" and _STUDY_DETAIL.fullmatch(path):
            return self.grid_first(environ, start_response)
        return self.app(environ, start_response)

    def grid_first(self, environ, start_response):
        caught: list = []
        result = self.app(environ, lambda status, headers, *info: caught.append((status, headers)))
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):  # as WSGI asks of whoever iterates an app's answer
                result.close()
        status, headers = caught[0]
        if status.startswith("200"):
            detail = json.loads(body)
            for trial in [*detail.get("trials", []), *detail.get("best_trials", [])]:
                trial["artifacts"] = grid_first(trial)
            body = json.dumps(detail).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def comparison(self, environ, start_response):
        from genopt.report.compare import NOTE_TOP, draw_trials, top_trials

        name = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("study", [""])[0]
        try:
            study = optuna.load_study(study_name=name, storage=self.storage)
        except KeyError:
            return _text(start_response, "404 Not Found", f"no study {name!r} in this storage")
        try:
            top = tuple(top_trials(study, self.store, NOTE_TOP))
            if self.drawn.get(name, (None,))[0] != top:
                self.drawn[name] = (top, draw_trials(study, self.store, top).png())
        except Exception as exc:  # the store moved or is unreachable: say so, keep serving
            return _text(start_response, "503 Service Unavailable", " ".join(str(exc).split()))
        png = self.drawn[name][1]
        headers = [
            ("Content-Type", "image/png"),
            ("Content-Length", str(len(png))),
            ("Cache-Control", "no-cache"),
        ]
        start_response("200 OK", headers)
        return [png]


def grid_first(trial: dict) -> list[dict]:
    """A trial's artifacts (optuna-dashboard's JSON) with its sample grid first, then by file name."""
    samples = next(
        (a.get("value") for a in trial.get("user_attrs", []) if a.get("key") == SAMPLES_ATTR), None
    )
    return sorted(
        trial.get("artifacts", []), key=lambda a: (a.get("artifact_id") != samples, a.get("filename", ""))
    )


def _text(start_response, status: str, text: str):
    body = (text + "\n").encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
