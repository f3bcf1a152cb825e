"""Wall-clock and CPU seconds of each training stage, as the summary and manifest.json report them."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _now() -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds of this process and its finished children (segmentation workers)."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return time.perf_counter(), sum(usage.ru_utime + usage.ru_stime for usage in usages)


class StageTimings:
    """Seconds per stage, in the order the stages ran. CPU seconds are kept next to wall seconds because the
    machines this runs on are often shared: they show what a stage costs whatever else was running."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage `name`; a stage that raises is not recorded."""
        wall, cpu = _now()
        yield
        wall_end, cpu_end = _now()
        self.seconds[name] = round(wall_end - wall, 2)
        self.cpu_seconds[name] = round(cpu_end - cpu, 2)
