"""What ``cryptoetl dev`` shows: every child's lines behind its name, and a failed step's error.

A :class:`DevError` ends the run with its one-line message on the console (``dev | error: ...``).
"""

from __future__ import annotations

import sys
from typing import TextIO


class DevError(RuntimeError):
    """A start-up step failed; the message says which and what to do."""


class Console:
    """Lines of every child, prefixed with its name, on one stream."""

    def __init__(self, out: TextIO | None = None, width: int = 7) -> None:
        self._out = out or sys.stdout
        self._width = width

    def line(self, name: str, text: str) -> None:
        self._out.write(f"{name:<{self._width}}| {text.rstrip()}\n")
        self._out.flush()

    def say(self, text: str) -> None:
        self.line("dev", text)
