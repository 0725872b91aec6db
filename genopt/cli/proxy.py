"""``genopt proxy``: serve a study storage to many workers over Optuna's gRPC proxy, heartbeats included."""

from __future__ import annotations

import argparse

from genopt.cli.options import add_storage, port


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "proxy",
        help="serve a storage to many workers (grpc://HOST:PORT), reaping their stale trials",
        description="Stand next to the database and serve it over Optuna's gRPC storage proxy: workers "
        "use --storage grpc://HOST:PORT and hold no database connection; their heartbeats come here, and "
        "trials that stop beating are failed and queued again here. No TLS or authentication: keep the "
        "port on a private network. Runs until SIGINT or SIGTERM.",
    )
    add_storage(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)"
    )
    p.add_argument("--port", type=port, default=13000, help="port to listen on (default 13000; 0: any free)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.study.storage.proxy import serve

    serve(args.storage, host=args.host, port=args.port)
    return 0
