"""Where a long run's time goes: wall seconds per named stage, and the process's peak memory."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Accumulates wall time per stage; ``with times("search"):`` adds the block's seconds to "search".

    It also notes the process's peak memory when each stage last ended: the stage where it
    first reaches the final peak is where the peak happened.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_after: dict[str, int] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.peak_after[stage] = peak_rss_bytes()

    def table(self) -> str:
        """A Markdown table: each stage's seconds, share of the total and the peak memory so far when it
        last ended (GiB), then the peak resident memory."""
        total = sum(self.seconds.values())
        lines = ["| stage | seconds | share | peak memory so far (GiB) |", "|---|---|---|---|"]
        for stage, seconds in self.seconds.items():
            share = f"{seconds / total:.0%}" if total else "-"
            lines.append(f"| {stage} | {seconds:.1f} | {share} | {self.peak_after[stage] / 2**30:.2f} |")
        lines.append(f"| total | {total:.1f} | | |")
        return "\n".join(lines) + f"\npeak resident memory: {peak_rss_bytes() / 2**30:.2f} GiB"


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
