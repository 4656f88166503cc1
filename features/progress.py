"""Stage lines for long jobs: one line when a stage starts and one when it ends, with its timing.

Library code reports stages through the ``rebuy.stage`` logger; the command line shows that logger
on the terminal (the person's view: one line per stage) while INFO detail of every other logger
goes to the log file. Nothing here configures logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGE_LOGGER = "rebuy.stage"
stage_logger = logging.getLogger(STAGE_LOGGER)


@contextmanager
def stage(name: str) -> Iterator[dict[str, object]]:
    """Report `name` as a stage: ``name ...`` on entry, ``name: done in 3.2 s (k=v, ...)`` on exit.

    The yielded dict collects figures to show on the closing line (``info["rows"] = 1000``). A stage
    left by an exception logs ``name: failed after ...`` and re-raises.
    """
    info: dict[str, object] = {}
    started = time.perf_counter()
    stage_logger.info("%s ...", name)
    try:
        yield info
    except BaseException:
        stage_logger.info("%s: failed after %.1f s", name, time.perf_counter() - started)
        raise
    details = ", ".join(f"{k} {v}" for k, v in info.items())
    stage_logger.info(
        "%s: done in %.1f s%s", name, time.perf_counter() - started, f" ({details})" if details else ""
    )


__all__ = ["STAGE_LOGGER", "stage"]
