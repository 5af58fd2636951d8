"""Exit codes and the exceptions core code raises; only the CLI turns them into output."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of madengine-cli (see the README)."""

    OK = 0
    FAILURE = 1
    BUILD_FAILURE = 2
    RUN_FAILURE = 3
    INVALID_INPUT = 4
    REGRESSION = 5
    """`compare` found a performance regression beyond its threshold (a CI gate; nothing failed to run)."""


class MadError(Exception):
    """An error the user can act on: a message, an optional hint and example, and an exit code."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None, example: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.example = example
        # Extra text (such as a script's traceback) shown only with --verbose.
        self.detail = detail


class InvalidInputError(MadError):
    """Bad user input: unknown tag, malformed JSON, missing context or manifest."""

    exit_code = ExitCode.INVALID_INPUT


class BuildError(MadError):
    exit_code = ExitCode.BUILD_FAILURE


class RunError(MadError):
    exit_code = ExitCode.RUN_FAILURE
