"""The one exception type a user can cause: the CLI prints its message as one line and exits 2."""

from __future__ import annotations


class GenoptError(Exception):
    """A problem with the user's input or environment, explained in one line that says what to do."""
