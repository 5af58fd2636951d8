"""Shared consoles and CLI-wide settings.

`console` (stdout) carries data such as tables and `--json`; `err_console` (stderr) carries
progress, warnings and errors, so piping stdout stays clean.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Width of output to a file or pipe (a CI log) when COLUMNS does not set one: Rich's 80 would cut
#: performance numbers and metric names in the results tables short.
PIPE_WIDTH = 120


def _new_console(**kwargs: Any) -> Console:
    """A Rich Console that is :data:`PIPE_WIDTH` wide when it writes to a file or pipe and COLUMNS is unset."""
    from rich.console import Console, ConsoleDimensions

    class _Console(Console):
        @property
        def size(self) -> ConsoleDimensions:
            size = super().size
            if not self.is_terminal and not os.environ.get("COLUMNS"):
                return ConsoleDimensions(PIPE_WIDTH, size.height)
            return size

        @size.setter
        def size(self, new_size: tuple[int, int]) -> None:
            Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    return _Console(**kwargs)


class _OnFirstUse:
    """Stands for the Console ``make()`` returns, made on first use.

    Importing Rich is a third of the CLI's start-up; ``--version``, ``--help`` and ``discover --json``
    print nothing through it, so they never pay for it.
    """

    def __init__(self, make: Callable[[], Console]) -> None:
        object.__setattr__(self, "_make", make)
        object.__setattr__(self, "_console", None)

    def _get(self) -> Console:
        console = object.__getattribute__(self, "_console")
        if console is None:
            console = object.__getattribute__(self, "_make")()
            object.__setattr__(self, "_console", console)
        return console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get(), name, value)

    def __enter__(self) -> Any:
        return self._get().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._get().__exit__(*exc)


console: Console = _OnFirstUse(_new_console)  # type: ignore[assignment]
err_console: Console = _OnFirstUse(lambda: _new_console(stderr=True))  # type: ignore[assignment]


class Settings:
    """Process-wide CLI settings set by the global and per-command `--verbose` flags."""

    verbose: bool = False


settings = Settings()


def set_verbose(verbose: bool) -> None:
    """Turn on debug logging and Rich tracebacks (idempotent; never turns verbose back off)."""
    if verbose:
        settings.verbose = True
    configure_logging()


class _RichLogHandler(logging.Handler):
    """Rich's log handler on :data:`err_console`, made when the first record is logged (Rich's import
    is start-up time most commands never need)."""

    def __init__(self) -> None:
        super().__init__()
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._rich is None:
            from rich.logging import RichHandler

            self._rich = RichHandler(console=err_console, show_time=False, show_path=False, markup=False,
                                     rich_tracebacks=True, tracebacks_show_locals=False)
        self._rich.setLevel(self.level)
        self._rich.handle(record)


def configure_logging() -> None:
    root = logging.getLogger("madengine")
    root.setLevel(logging.DEBUG if settings.verbose else logging.INFO)
    if not any(isinstance(h, _RichLogHandler) for h in root.handlers):
        root.addHandler(_RichLogHandler())
    for handler in root.handlers:
        handler.setLevel(logging.DEBUG if settings.verbose else logging.WARNING)
