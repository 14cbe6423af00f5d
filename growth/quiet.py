"""Keep orbax's shutdown noise out of stderr: after a failed save (e.g. a full disk), its background event
loops print "RuntimeError: Event loop is closed" tracebacks that would bury the one line that matters.

Only that exact traceback is dropped; every other write passes through unchanged.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

HEADER = "Traceback (most recent call last):"
NOISE = "RuntimeError: Event loop is closed"


class NoiseFilter:
    """A text stream wrapper that drops tracebacks ending in NOISE."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.pending = ""
        self.block: list[str] | None = None

    def write(self, text: str) -> int:
        self.pending += text
        while self.pending:
            if self.block is None:
                if HEADER.startswith(self.pending) and "\n" not in self.pending:
                    break  # could still become a traceback header: wait for more
                if self.pending.startswith(HEADER + "\n"):
                    self.block = [HEADER + "\n"]
                    self.pending = self.pending[len(HEADER) + 1 :]
                    continue
                cut = self.pending.find("\n", 1 if self.pending.startswith(HEADER) else 0)
                out, self.pending = (
                    (self.pending, "") if cut < 0 else (self.pending[: cut + 1], self.pending[cut + 1 :])
                )
                self.stream.write(out)
                continue
            cut = self.pending.find("\n")
            if cut < 0:
                break
            line, self.pending = self.pending[: cut + 1], self.pending[cut + 1 :]
            if line[:1].isspace():
                self.block.append(line)
                continue
            if line.rstrip("\n") != NOISE:
                self.stream.write("".join(self.block) + line)
            self.block = None
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def install() -> None:
    """Wrap sys.stderr once (idempotent)."""
    if not isinstance(sys.stderr, NoiseFilter):
        sys.stderr = NoiseFilter(sys.stderr)  # type: ignore[assignment]
