"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1, else one line naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_storage(parser: argparse.ArgumentParser) -> None:
    """The ``--storage URL`` option, with the same default and help everywhere."""
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///storage/genopt.db)")
