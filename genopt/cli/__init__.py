"""The ``genopt`` command: one small module per subcommand, each a parser plus one library call.

Exit statuses, each end but the first saying itself in one line on stderr, never a traceback:

- 0: the run is done: it ran its trials, ``--trials auto`` found the study converged, or its
  ``--timeout`` budget ran out (the trial running then kept its best epoch so far).
- 2: an error a user can cause (bad input, a full artifact store); nothing half-written.
- 75: stopped as asked by a first Ctrl-C (SIGINT) or SIGTERM: the running trial kept its best epoch
  so far; rerun the same command to continue (``genopt.study.stop.EXIT_STOPPED``, sysexits.h's
  EX_TEMPFAIL, which a scheduler can be told means "rerun me").
- 130: aborted: a second Ctrl-C or SIGTERM, or Ctrl-C before trials run; the running trial is FAIL.

Nothing else is caught.
"""

from __future__ import annotations

import argparse
import sys

from genopt.cli import compare, dashboard, ensemble, proxy, report, sample, study, worker
from genopt.errors import GenoptError

_SUBCOMMANDS = (study, worker, ensemble, sample, compare, report, dashboard, proxy)


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
