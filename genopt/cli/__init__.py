"""The ``genopt`` command: one small module per subcommand, each a parser plus one library call.

Errors a user can cause end as one line on stderr and exit status 2; Ctrl-C ends as one line and
exit status 130; nothing else is caught.
"""

from __future__ import annotations

import argparse
import sys

from genopt.cli import dashboard, ensemble, report, sample, study, worker
from genopt.errors import GenoptError

_SUBCOMMANDS = (study, worker, ensemble, sample, report, dashboard)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints the whole usage; one line says enough
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="genopt",
        description="Hyperparameter search for GAN and cGAN image generators, scored by FID.",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )
    for module in _SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except GenoptError as exc:
        print(f"genopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Optuna has recorded the running trial as FAIL (reason "interrupted"); nothing is half-written.
        print(
            f"genopt {args.command}: interrupted: the running trial is marked FAIL; rerun to continue",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
