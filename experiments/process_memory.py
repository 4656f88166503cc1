"""Peak resident memory of a process tree, sampled with psutil (benchmarks that run a child).

`TreePeak` samples the summed RSS of a process and all its descendants in a background thread
until stopped: a child that runs work in its own children (Spark's JVM, `rebuy train`'s second
process) is measured whole, which ``wait4``'s ``ru_maxrss`` (the largest single process) is not.
"""

from __future__ import annotations

import threading

import psutil

POLL_SECONDS = 0.2


def tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and its descendants now (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


class TreePeak:
    """Context manager: the largest `tree_rss` of `pid` seen while inside (``peak`` bytes)."""

    def __init__(self, pid: int, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.pid = pid
        self.peak = 0
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self._poll)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
