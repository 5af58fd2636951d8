# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Service layer: run one container to its end (create → start → stream logs → wait → remove).

The container is removed whatever happens (success, engine error, timeout, KeyboardInterrupt) unless the
caller asks to keep it. Engine errors end up in `ContainerOutcome.error` rather than raising, so every run
becomes a row. Standard library only: this runs on target hosts too.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from ansible_collections.mad.engine.plugins.module_utils._engine import (
    EngineClient,
    EngineError,
    LogStream,
    WaitTimeout,
)
from ansible_collections.mad.engine.plugins.module_utils._secrets import LineMasker, mask_text, secret_values

#: A write failed because the file system is full (or the user's quota is).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How often the waiting thread looks up from `POST /wait` (to notice a failed on_line callback).
WAIT_SLICE = 1.0
# After a kill on timeout: how long to wait for the container to actually stop.
KILL_GRACE = 5.0
# After the container stopped: how long the log stream may take to deliver its tail.
LOG_DRAIN_TIMEOUT = 10.0
# Keep-alive: after the script ended, the quiet time that means its last output was delivered, and the
# longest wait for it.
SETTLE_QUIET = 0.2
SETTLE_MAX = 2.0


@dataclass
class ContainerOutcome:
    """How a container run ended.

    `exit_code` is None if the command did not exit by itself (timeout, infrastructure error);
    `error` is infrastructure trouble ("image not found: ..."), not a non-zero exit; `duration` counts
    seconds from start to exit (or to the deadline); `kept` means the container was left in place.
    """

    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    error: str | None = None
    container_id: str | None = None
    kept: bool = False


class Deadline:
    """A deadline on time.monotonic(); `seconds` None or <= 0 means none."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds if seconds and seconds > 0 else None
        self.start = time.monotonic()
        self.end = None if self.seconds is None else self.start + self.seconds

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


#: A live line longer than this is shown cut (the log keeps it whole).
MAX_LINE_BYTES = 16 * 1024


class LineSplitter:
    """Bytes in, complete lines out (UTF-8, bad bytes replaced, no line ending). Keep one per stream.

    Linear in the bytes fed and bounded in memory: a line shows what a terminal would, the text after
    its last carriage return (a progress bar's last state), and at most MAX_LINE_BYTES of it.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._kept = 0
        self._dropped = 0
        self._cr = False  # the line so far ends with a carriage return: new text starts it over

    def _reset(self) -> None:
        self._parts, self._kept, self._dropped = [], 0, 0

    def _add(self, piece: bytes) -> None:
        if not piece:
            return
        text = piece.rstrip(b"\r")
        if text:
            cr = text.rfind(b"\r")
            if self._cr or cr >= 0:
                self._reset()
                text = text[cr + 1:]
            room = MAX_LINE_BYTES - self._kept
            if room > 0:
                self._parts.append(text[:room])
                self._kept += min(room, len(text))
            self._dropped += max(0, len(text) - max(room, 0))
        self._cr = piece.endswith(b"\r")

    def _line(self) -> str:
        line = b"".join(self._parts).decode("utf-8", "replace")
        if self._dropped:
            line += f" … ({self._dropped} more bytes in the log)"
        self._reset()
        self._cr = False
        return line

    def feed(self, data: bytes) -> list[str]:
        *complete, rest = data.split(b"\n")
        lines = []
        for piece in complete:
            self._add(piece)
            lines.append(self._line())
        self._add(rest)
        return lines

    def flush(self) -> list[str]:
        """The unterminated last line, if any."""
        return [self._line()] if self._kept or self._dropped else []


class _LogPump(threading.Thread):
    """Follows a container's logs: bytes to `log` (flushed per chunk), decoded lines to `on_line`, both
    with `secrets` masked (then the log gets whole lines of each stream; see LineMasker).

    A failure of `on_line` is kept in `failure` for the caller's thread to re-raise; a log write error
    or a failed log request is kept in `error` (the run then counts as an infrastructure failure).
    """

    def __init__(
        self,
        engine: EngineClient,
        container_id: str,
        log: BinaryIO | None,
        on_line: Callable[[str], None] | None,
        tty: bool,
        secrets: Sequence[str] = (),
    ) -> None:
        super().__init__(name=f"logs-{container_id[:12]}", daemon=True)
        self._engine = engine
        self._container_id = container_id
        self._log = log
        self._on_line = on_line
        self._tty = tty
        self._lock = threading.Lock()
        self._stopped = False
        self._stream: LogStream | None = None
        self._splitters: dict[str, LineSplitter] = {}
        self._secrets = list(secrets)
        self._maskers: dict[str, LineMasker] = {}
        self.frames = 0  # log frames delivered so far
        self.failure: BaseException | None = None
        self.error: str | None = None

    def run(self) -> None:
        stream = None
        try:
            stream = self._engine.container_logs(self._container_id, follow=True, tty=self._tty)
            with self._lock:
                self._stream = stream
                if self._stopped:
                    return
            for name, data in stream:
                with self._lock:
                    if self._stopped:
                        return
                    masked = self._write(name, data)
                self._emit(self._split(name, masked))
        except EngineError as e:
            self.error = f"{e.reason}: {e}"
        except BaseException as e:  # re-raised in the caller's thread by check()
            self.failure = e
        finally:
            if stream is not None:
                stream.close()

    def finish(self, catch_up: bool) -> None:
        """In the caller's thread, once the pump has ended: deliver what the follow stream missed (with
        `catch_up`, for a stopped container), then the unterminated last lines.

        dockerd 20.10 may end a follow stream before the container's last output is read from the log
        file; a plain read of the whole log has it, and its first `frames` frames were delivered already.
        """
        if self.is_alive() or self.failure is not None:
            return
        if catch_up and self.error is None:
            try:
                stream = self._engine.container_logs(self._container_id, follow=False, tty=self._tty)
                try:
                    for index, (name, data) in enumerate(stream):
                        if index >= self.frames:
                            self._emit(self._split(name, self._write(name, data)))
                finally:
                    stream.close()
            except EngineError as e:
                self.error = f"{e.reason}: {e}"
        for stream_name, masker in self._maskers.items():
            rest = masker.flush()
            self._write_log(rest)
            self._emit(self._split(stream_name, rest))
        for splitter in self._splitters.values():
            self._emit(splitter.flush())

    def flush_held(self) -> None:
        """Write what the maskers still hold (unterminated last lines); the pump must be stopped."""
        for masker in self._maskers.values():
            self._write_log(masker.flush())

    def _write(self, stream_name: str, data: bytes) -> bytes:
        """Mask `data` and write what is ready of it to the log; returns what was written."""
        self.frames += 1
        masker = self._maskers.get(stream_name)
        if masker is None:
            masker = self._maskers[stream_name] = LineMasker(self._secrets)
        masked = masker.feed(data)
        self._write_log(masked)
        return masked

    def _write_log(self, data: bytes) -> None:
        if self._log is None or self.error is not None or not data:
            return
        try:
            self._log.write(data)
            self._log.flush()
        except (OSError, ValueError) as e:  # ValueError: the file was closed under us
            full = getattr(e, "errno", None) in DISK_FULL_ERRNOS
            self.error = f"{'disk full: ' if full else ''}writing the container log failed: {e}"

    def _split(self, stream_name: str, data: bytes) -> list[str]:
        splitter = self._splitters.get(stream_name)
        if splitter is None:
            splitter = self._splitters[stream_name] = LineSplitter()
        return splitter.feed(data)

    def _emit(self, lines: list[str]) -> None:
        if self._on_line is not None:
            for line in lines:
                self._on_line(mask_text(line, self._secrets))

    def check(self) -> None:
        """Re-raise, in the calling thread, what `on_line` raised (KeyboardInterrupt included)."""
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """No more writes from the thread once this returns; ends a still-open log stream."""
        with self._lock:
            self._stopped = True
            stream = self._stream
        if stream is not None:
            stream.close()


def run_container(
    engine: EngineClient,
    body: Mapping[str, Any],
    name: str,
    log: BinaryIO | None,
    timeout: float | None,
    on_line: Callable[[str], None] | None = None,
    keep_alive: bool = False,
    exit_probe: Callable[[], int | None] | None = None,
) -> ContainerOutcome:
    """Create, start and follow a container until it exits or `timeout` seconds pass, then remove it.

    `body` is the engine's create JSON. On the deadline the container is killed (not with keep_alive)
    and `timed_out` set. Engine errors fill `error` and never raise; an exception from `on_line` (e.g.
    KeyboardInterrupt) is re-raised after cleanup. With `keep_alive` a started container is left as it
    is (`kept`); the command decides whether it keeps running. `exit_probe` reports the script's exit
    code while the container itself stays up (keep-alive commands write it to a file), or None.
    """
    outcome = ContainerOutcome()
    pump: _LogPump | None = None
    started_at: float | None = None
    stopped = False  # the container has stopped, so its log stream ends by itself
    try:
        outcome.container_id = container_id = _create(engine, body, name)
        engine.container_start(container_id)
        started_at = time.monotonic()
        # The limit is on the model's own run time: it starts once the container does.
        deadline = Deadline(timeout)
        pump = _LogPump(engine, container_id, log, on_line, tty=bool(body.get("Tty")), secrets=secret_values(body))
        pump.start()
        try:
            outcome.exit_code, stopped = _wait_for_exit(engine, container_id, deadline, pump, exit_probe)
        except WaitTimeout:
            outcome.timed_out = True
        outcome.duration = time.monotonic() - started_at
        if outcome.timed_out and not keep_alive:
            engine.container_kill(container_id)
            try:
                engine.container_wait(container_id, timeout=KILL_GRACE)
                stopped = True
            except WaitTimeout:
                pass  # the forced remove below still gets rid of it
        # The script ended by itself while the container stays up (keep-alive: `exit_probe`).
        script_ended = not stopped and outcome.exit_code is not None
        if stopped:
            pump.join(LOG_DRAIN_TIMEOUT)  # the log file must be complete when we return
        elif script_ended:
            _settle(pump)  # its follow stream never ends: let the output in flight arrive
        pump.stop()
        pump.join(2.0)
        pump.check()
        # A fast script can end before the follow stream even started: read what it missed.
        pump.finish(catch_up=stopped or script_ended)
        outcome.error = pump.error
    except EngineError as e:
        outcome.error = f"{e.reason}: {e}" if str(e) != e.reason else e.reason
    finally:
        if pump is not None:
            pump.stop()
            pump.join(2.0)
            # After an interruption too: the held-back last lines (a no-op after finish()). Once stop() has
            # returned the thread writes nothing more, even if it is still blocked in on_line.
            pump.flush_held()
        if started_at is not None and not outcome.duration:
            outcome.duration = time.monotonic() - started_at
        if outcome.container_id is not None:
            if keep_alive and started_at is not None:
                outcome.kept = True
            else:
                _remove(engine, outcome.container_id, outcome)
    return outcome


def _create(engine: EngineClient, body: Mapping[str, Any], name: str) -> str:
    try:
        return engine.container_create(body, name)
    except EngineError:
        raise
    except BaseException:
        # Interrupted mid-request: the engine may have created it anyway, and only the name is known.
        if name:
            with contextlib.suppress(EngineError):
                engine.container_remove(name, force=True)
        raise


def _settle(pump: _LogPump) -> None:
    """Wait until the log pump delivered nothing new for SETTLE_QUIET seconds (at most SETTLE_MAX)."""
    end = time.monotonic() + SETTLE_MAX
    frames = -1
    while pump.frames != frames and pump.is_alive() and time.monotonic() < end:
        frames = pump.frames
        time.sleep(SETTLE_QUIET)


def _wait_for_exit(engine: EngineClient, container_id: str, deadline: Deadline, pump: _LogPump,
                   exit_probe: Callable[[], int | None] | None = None) -> tuple[int, bool]:
    """`(exit code, container stopped)`; WaitTimeout once the deadline passes.

    Waits in slices so that a failure of the log callback surfaces here, in the caller's thread.
    """
    while True:
        pump.check()
        probed = exit_probe() if exit_probe is not None else None
        if probed is not None:
            return probed, False
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(f"container {container_id[:12]} still running at its deadline")
        step = WAIT_SLICE if remaining is None else min(WAIT_SLICE, remaining)
        try:
            return engine.container_wait(container_id, timeout=step), True
        except WaitTimeout:
            continue


def _remove(engine: EngineClient, container_id: str, outcome: ContainerOutcome) -> None:
    try:
        engine.container_remove(container_id, force=True)
    except EngineError as e:
        # Never mask what is already propagating; report it only if nothing else went wrong.
        if outcome.error is None:
            outcome.error = f"{e.reason}: {e}"
