"""One step of a training run in a second process, beside the main one.

``rebuy train`` spends most of its time in single-threaded pandas work, so on a 2-core machine the
recommender and the repurchase / timing models train side by side: the repurchase models are
fitted in a child process (`SideProcess`) while the parent fits the recommender, and the parent
then logs and registers everything in MLflow itself (one writer to the registry).

- The child is started with ``spawn``: LightGBM's OpenMP runtime is not fork-safe once the parent
  has used it.
- Its arguments and its result travel pickled; a failure inside comes back as the exception itself
  (its traceback is logged) and is raised by `SideProcess.result`.
- Each process gets one core's worth of threads (the child ``OMP_NUM_THREADS=1``, the caller
  passes one-thread settings to its own step): two processes of two OpenMP threads each on two
  cores spend their time waiting on each other (measured: 311 s instead of 333 s one after the other).
- Its log records come back through a queue and are handled by the parent's loggers, so its stage
  lines reach the terminal and its details the command's log file, as when run in-process.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from features.errors import RebuyError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SideProcessError(RebuyError):
    """The child process ended without a result (killed, out of memory) or with an unpicklable error."""


class _Forward(logging.Handler):
    """Hands each record from the child to the parent's logger of the same name."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        self.handle(record)


def _child_main(
    conn: Connection,
    queue: Any,
    levels: dict[str, int],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """The child: log through `queue` at the parent's levels, run `fn`, send back its outcome."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    try:
        outcome: tuple[str, Any, str] = ("ok", fn(*args, **kwargs), "")
    except BaseException as exc:
        outcome = ("error", exc, traceback.format_exc())
    try:
        conn.send(outcome)
    except Exception as exc:
        conn.send(("error", SideProcessError(f"{type(exc).__name__}: {exc}"), outcome[2]))
    finally:
        conn.close()


def _levels() -> dict[str, int]:
    """The levels set on the parent's loggers (root as ``""``), for the child to use the same."""
    named = {
        name: log.level
        for name, log in logging.root.manager.loggerDict.items()
        if isinstance(log, logging.Logger) and log.level != logging.NOTSET
    }
    return {"": logging.getLogger().level, **named}


class SideProcess(Generic[T]):
    """``fn(*args, **kwargs)`` running in a spawned child process from construction on.

    Call `result` once to wait for it (and the child to end), or `stop` to end it early.
    """

    def __init__(
        self,
        fn: Callable[..., T],
        *args: Any,
        name: str = "rebuy-side",
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start the child; `env` is added to its environment (``OMP_NUM_THREADS``: read when
        its libraries load, before `fn` runs)."""
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._listener = logging.handlers.QueueListener(self._queue, _Forward())
        self._listener.start()
        receive, send = ctx.Pipe(duplex=False)
        self._receive = receive
        self._process = ctx.Process(
            target=_child_main, args=(send, self._queue, _levels(), fn, args, kwargs), name=name, daemon=True
        )
        saved = {key: os.environ.get(key) for key in env or {}}
        os.environ.update(env or {})
        try:
            self._process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        send.close()
        self._done = False

    def result(self) -> T:
        """Wait for the child; its result, or its exception raised here."""
        try:
            status, value, trace = self._receive.recv()
        except EOFError:
            self._process.join()
            raise SideProcessError(
                f"the {self._process.name} process ended without a result (exit code {self._process.exitcode})"
            ) from None
        finally:
            self._finish()
        if status == "error":
            logger.info("%s process failed:\n%s", self._process.name, trace)
            raise value
        return value

    def stop(self) -> None:
        """End the child now (when the parent's own step failed)."""
        if not self._done:
            self._process.terminate()
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._process.join(timeout=30)
        self._receive.close()
        self._listener.stop()
        self._queue.close()


__all__ = ["SideProcess", "SideProcessError"]
