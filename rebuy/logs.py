"""Logging of one `rebuy` command: INFO detail to a log file, stage lines and warnings on the terminal.

`command_logging` routes the records of every logger for the length of one command:

- the log file ``<REBUY_HOME>/logs/rebuy-<command>-<YYYYmmdd-HHMMSS>.log`` gets INFO and above of
  every logger (MLflow's and alembic's included), the traceback of a failure, and a first line
  naming the command. It is created at the first record, so ``--help`` leaves no file behind.
- the terminal (stderr) gets WARNING and above of every logger (Python warnings included) plus
  the stage lines of the ``rebuy.stage`` logger (`features.progress.stage`); with ``verbose``
  all INFO.

MLflow normally puts its own stderr handler on the ``mlflow`` and ``alembic`` loggers and prints
registrations (``Successfully registered model ...``) straight to stderr. For the command its
records go through the handlers above, and its prints become INFO records of ``mlflow.prints``.
Everything is put back on exit, so commands run in-process (tests) leave logging as it was.
Only the CLI calls this; nothing happens at import.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

from features.progress import STAGE_LOGGER

DEFAULT_HOME = ".rebuy"
"""Same default as `training.registry.RegistrySettings.from_env` (not imported: it loads MLflow)."""
LOG_DIR = "logs"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TERMINAL_TIME = "%H:%M:%S"
FILE_ONLY = {"rebuy_file_only": True}
"""``extra=`` for records meant for the log file only (the terminal already shows them otherwise)."""
OWN_PACKAGES = ("features", "training", "serving", "experiments", "rebuy")
"""Top-level packages whose loggers the command re-enables if a library disabled them."""

MLFLOW_LOGGERS = ("mlflow", "alembic", "huey")
"""Loggers MLflow configures itself on import (own stderr handler, no propagation)."""
MLFLOW_PRINTS = "mlflow.prints"
"""Logger of the lines MLflow prints to stderr (``Successfully registered model ...``)."""
QUIET_LOGGERS = {"sqlalchemy.engine": logging.WARNING}
"""Kept above INFO even in the log file: SQLAlchemy's INFO echoes every SQL statement."""

logger = logging.getLogger(__name__)


def rebuy_home(environ: dict[str, str] | None = None) -> Path:
    """The local state folder: ``REBUY_HOME``, default ``.rebuy``, resolved as the registry does."""
    env = os.environ if environ is None else environ
    return Path(env.get("REBUY_HOME") or DEFAULT_HOME).expanduser().resolve()


def log_file_path(home: Path, command: str, *, now: datetime | None = None) -> Path:
    """A new log file path ``<home>/logs/rebuy-<command>-<YYYYmmdd-HHMMSS>[-n].log`` (not created)."""
    stem = f"rebuy-{command}-{(now or datetime.now()):%Y%m%d-%H%M%S}"
    path, n = home / LOG_DIR / f"{stem}.log", 1
    while path.exists():  # two commands started in the same second
        path, n = home / LOG_DIR / f"{stem}-{n}.log", n + 1
    return path


class _CommandLogFile(logging.FileHandler):
    """A log file created (with its folder and a first line naming the command) at the first record."""

    def __init__(self, path: Path, header: str) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.header = header
        self.setFormatter(logging.Formatter(FILE_FORMAT))

    def _open(self) -> IO[str]:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        stream = super()._open()
        stream.write(self.header + "\n")
        return stream


class _TerminalFilter(logging.Filter):
    def __init__(self, *, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rebuy_file_only", False):
            return False
        if self.verbose or record.levelno >= logging.WARNING:
            return True
        return record.name == STAGE_LOGGER or record.name.startswith(STAGE_LOGGER + ".")


class _TerminalFormatter(logging.Formatter):
    """``12:00:01 features: done in 1.2 s`` for stage lines; other records add level and logger name."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt=TERMINAL_TIME)
        self._stage = logging.Formatter("%(asctime)s %(message)s", datefmt=TERMINAL_TIME)

    def format(self, record: logging.LogRecord) -> str:
        if record.name == STAGE_LOGGER and record.levelno == logging.INFO:
            return self._stage.format(record)
        return super().format(record).rstrip()  # captured warnings end in a newline


class _PrintsToLog:
    """Stands in for MLflow's print stream (``eprint``): each printed line becomes an INFO record."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.enabled = True  # MLflow's disable_logging / enable_logging set it
        self._buffer = ""

    def write(self, text: str) -> int:
        *lines, self._buffer = (self._buffer + text).split("\n")
        for line in lines:
            if self.enabled and line.strip():
                self.logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        pass


@contextmanager
def command_logging(
    path: Path, *, command: str, verbose: bool = False, import_mlflow: bool = False
) -> Iterator[Path]:
    """Route logging for one command to the log file `path` and the terminal; yields `path`.

    Parameters
    ----------
    path
        The log file (see `log_file_path`); created with its folder at the first record.
    command
        The command's name, for the first line of the file and the failure record.
    verbose
        Show INFO of every logger on the terminal too.
    import_mlflow
        Import MLflow up front (commands that use it), so that its prints go to the log as well.
        Its loggers are routed here either way: ``MLFLOW_CONFIGURE_LOGGING=false`` is set for the
        command, and the handlers of an MLflow imported earlier are set aside.
    """
    file_handler = _CommandLogFile(
        path, f"rebuy {' '.join(sys.argv[1:])} (cwd {Path.cwd()}, pid {os.getpid()})"
    )
    terminal = logging.StreamHandler(sys.stderr)
    terminal.addFilter(_TerminalFilter(verbose=verbose))
    terminal.setFormatter(_TerminalFormatter())

    saved_env = os.environ.get("MLFLOW_CONFIGURE_LOGGING")
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    if import_mlflow:
        importlib.import_module("mlflow")
    root = logging.getLogger()
    saved_root = root.level
    saved: dict[str, tuple[list[logging.Handler], bool, int]] = {}
    for name in (*MLFLOW_LOGGERS, *QUIET_LOGGERS):
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.propagate, lg.level)
        lg.handlers, lg.propagate = [], True
        lg.setLevel(QUIET_LOGGERS.get(name, logging.NOTSET))
    # MLflow prints registrations etc. to stderr through one module-level stream, which its own
    # code switches on and off (a flag on it is not enough): put a stream into the log in its place
    mlflow_logging = sys.modules.get("mlflow.utils.logging_utils")
    saved_stream = None if mlflow_logging is None else mlflow_logging.MLFLOW_LOGGING_STREAM
    if mlflow_logging is not None:
        mlflow_logging.MLFLOW_LOGGING_STREAM = _PrintsToLog(MLFLOW_PRINTS)
    # a library configuring logging with disable_existing_loggers (dictConfig / fileConfig) earlier
    # in this process would have silenced our loggers, the stage lines among them: enable them here
    disabled = [
        lg
        for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and lg.disabled and name.split(".")[0] in OWN_PACKAGES
    ]
    for lg in disabled:
        lg.disabled = False
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(terminal)
    logging.captureWarnings(True)
    try:
        yield path
    except BaseException as exc:
        code = getattr(exc, "exit_code", None)
        if code is None and not isinstance(exc, KeyboardInterrupt):
            logger.error("rebuy %s failed", command, exc_info=exc, extra=FILE_ONLY)
        elif code:
            logger.error("rebuy %s exited with code %s", command, code, extra=FILE_ONLY)
        raise
    finally:
        logging.captureWarnings(False)
        root.removeHandler(terminal)
        root.removeHandler(file_handler)
        file_handler.close()
        root.setLevel(saved_root)
        for lg in disabled:
            lg.disabled = True
        for name, (handlers, propagate, level) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
        if mlflow_logging is not None:
            mlflow_logging.MLFLOW_LOGGING_STREAM = saved_stream
        if saved_env is None:
            os.environ.pop("MLFLOW_CONFIGURE_LOGGING", None)
        else:
            os.environ["MLFLOW_CONFIGURE_LOGGING"] = saved_env


__all__ = ["FILE_ONLY", "command_logging", "log_file_path", "rebuy_home"]
