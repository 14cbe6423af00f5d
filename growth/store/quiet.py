"""Keep orbax's shutdown noise out of stderr: after a failed save (e.g. a full disk), tensorstore's
completion callbacks call `call_soon_threadsafe` on orbax's already closed event loops, and each prints a
"RuntimeError: Event loop is closed" traceback that would bury the one line that matters.

Two guards, both narrow: scheduling on a closed loop becomes a no-op (nothing could run there anyway),
and a stderr filter drops that exact traceback should one still be printed. Every other write passes
through unchanged.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, TextIO

HEADER = "Traceback (most recent call last):"
NOISE = "RuntimeError: Event loop is closed"


class NoiseFilter:
    """A text stream wrapper that drops tracebacks ending in NOISE."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.pending = ""
        self.block: list[str] | None = None
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return self._write(text)

    def _write(self, text: str) -> int:
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


_schedule = asyncio.BaseEventLoop.call_soon_threadsafe


def _schedule_unless_closed(self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> Any:
    if self.is_closed():
        return None  # the loop is gone: the callback could never run
    return _schedule(self, *args, **kwargs)


def install() -> None:
    """Install both guards once (idempotent)."""
    asyncio.BaseEventLoop.call_soon_threadsafe = _schedule_unless_closed  # type: ignore[method-assign,assignment]
    if not isinstance(sys.stderr, NoiseFilter):
        sys.stderr = NoiseFilter(sys.stderr)  # type: ignore[assignment]
