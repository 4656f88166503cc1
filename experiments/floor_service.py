"""A trivial BentoML service: the framework's own latency floor for the serving benchmarks.

One ``/ping`` endpoint that answers ``{"ok": true}``, nothing loaded. The benchmarks run it next
to the real service, in the same run, and compare tails (``/recommend`` p99 against this p99).
"""

from __future__ import annotations

import bentoml


@bentoml.service(traffic={"timeout": 10})
class FloorService:
    """Nothing but a ping."""

    @bentoml.api(route="/ping")
    def ping(self) -> dict[str, bool]:
        return {"ok": True}
