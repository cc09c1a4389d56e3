"""Where a long run's time and memory go: stages accumulate, and the stage that allocates is where the peak rises."""

from __future__ import annotations

import time

from fp4sim.quant.stages import StageTimes, peak_rss_bytes


def test_stages_accumulate_time_and_note_the_peak_after_each() -> None:
    times = StageTimes()
    for _ in range(2):
        with times("wait"):
            time.sleep(0.05)
    before = peak_rss_bytes()
    with times("allocate"):
        block = bytearray(before - _current_rss_bytes() + (64 << 20))  # past the peak so far: it must rise
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    assert times.seconds["wait"] >= 0.1 and list(times.seconds) == ["wait", "allocate"]
    assert times.peak_after["wait"] <= before < times.peak_after["allocate"]
    table = times.table()
    assert "| wait |" in table and "| allocate |" in table and "peak resident memory" in table


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096
