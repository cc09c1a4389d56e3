"""The cycle-accurate array: same bits as the fast GEMM and the oracle, outputs on the spec's cycle."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from operands import random_gemm

from fp4sim import PEConfig, array_gemm, gemm
from fp4sim.hw.fp4_array import ArrayInputs, collect_tiles, fp4_array, idle_inputs, port_trace, schedule_gemm
from fp4sim.hw.fp4_round_to_float import FP32


@pytest.mark.parametrize(
    ("m", "k", "n", "rows", "cols"),
    [
        (1, 1, 1, 1, 1),
        (5, 1, 7, 4, 4),
        (4, 8, 4, 4, 4),
        (9, 13, 6, 4, 4),
        (3, 40, 11, 2, 5),
        (17, 3, 2, 8, 1),
        (6, 70, 6, 3, 3),
    ],
)
def test_array_gemm_and_oracle_agree(m: int, k: int, n: int, rows: int, cols: int, rng: np.random.Generator) -> None:
    for _ in range(3):
        config, a, w, s = random_gemm(rng, m, k, n)
        fa, fw = config.fmt_a, config.fmt_w
        stepped = array_gemm(a, w, s, fa, fw, rows=rows, cols=cols)
        fast = gemm(a, w, s, fa, fw)
        np.testing.assert_array_equal(stepped.view(np.uint32), fast.view(np.uint32))
        family_a = (config.fmt_a.ebits, config.fmt_a.mbits, config.fmt_a.bias)
        family_w = (config.fmt_w.ebits, config.fmt_w.mbits, config.fmt_w.bias)
        expected = [[oracle.dot("exact", a[i], w[:, j], s, family_a, family_w) for j in range(n)] for i in range(m)]
        np.testing.assert_array_equal(stepped, np.array(expected, dtype=np.float32))


@pytest.mark.parametrize("out", ["bf16", "fp16"])
def test_narrow_outputs_match_gemm(out: str, rng: np.random.Generator) -> None:
    config, a, w, s = random_gemm(rng, 7, 300, 5)
    fa, fw = config.fmt_a, config.fmt_w
    stepped = array_gemm(a, w, s, fa, fw, rows=3, cols=2, out=out)
    np.testing.assert_array_equal(stepped, gemm(a, w, s, fa, fw, out=out))


def test_every_output_appears_on_its_cycle(rng: np.random.Generator) -> None:
    """PE (r, c) of a tile whose in_last is sampled at edge n pulses out_valid at edge n + r + c + 1."""
    config, a, w, s = random_gemm(rng, 10, 3, 7)
    stream, tiles = schedule_gemm(a, w, s, 4, 3)
    outputs = fp4_array(stream, config)
    assert outputs.cycle.size == len(tiles) * 4 * 3
    seen = np.zeros((4, 3), dtype=int)
    for cycle, r, c in zip(outputs.cycle, outputs.row, outputs.col, strict=True):
        assert cycle == tiles[seen[r, c]].last_cycle + r + c + 1
        seen[r, c] += 1
    assert outputs.cycle.max() < stream.cycles + 1  # the drain is long enough


def _with_bubbles(stream: ArrayInputs, rng: np.random.Generator) -> ArrayInputs:
    """The same stream with idle edges (in_valid low, junk on the data ports) inserted at random."""
    keep = np.flatnonzero(stream.in_valid)
    gaps = rng.integers(0, 3, keep.size)
    total = keep.size + int(gaps.sum()) + stream.a_in.shape[1] + stream.w_in.shape[1]
    bubbly = idle_inputs(total, stream.a_in.shape[1], stream.w_in.shape[1])
    bubbly.a_in[:] = rng.integers(0, 16, bubbly.a_in.shape)
    bubbly.w_in[:] = rng.integers(0, 16, bubbly.w_in.shape)
    bubbly.in_last[:] = rng.integers(0, 2, total)  # in_last is ignored without in_valid
    at = np.cumsum(gaps + 1) - 1
    for field in ("in_valid", "in_last", "a_in", "w_in", "s_in"):
        getattr(bubbly, field)[at] = getattr(stream, field)[keep]
    return bubbly


def test_bubbles_do_not_change_results(rng: np.random.Generator) -> None:
    config, a, w, s = random_gemm(rng, 6, 9, 5)
    stream, tiles = schedule_gemm(a, w, s, 3, 3)
    bubbly = _with_bubbles(stream, rng)
    outputs = fp4_array(bubbly, config)
    result = collect_tiles(outputs, tiles, 6, 5, FP32)
    np.testing.assert_array_equal(result, gemm(a, w, s, config.fmt_a, config.fmt_w))


def test_reset_mid_tile_clears_partial_sums(rng: np.random.Generator) -> None:
    """Reset during tile 1's K steps: tile 1 never comes out, tile 2 comes out exact."""
    config, a, w, s = random_gemm(rng, 2, 6, 2)
    stream, _ = schedule_gemm(a, w, s, 2, 2)  # one tile, in_last at edge 5
    second, _ = schedule_gemm(a[:, :4], w[:4], s[:4], 2, 2)
    combined = idle_inputs(stream.cycles + second.cycles, 2, 2)
    for field in ArrayInputs._fields:
        getattr(combined, field)[:4] = getattr(stream, field)[:4]  # tile 1, cut before its last step
        getattr(combined, field)[5 : 5 + second.cycles] = getattr(second, field)
    combined.rst[4] = 1
    outputs = fp4_array(combined, config)
    assert outputs.cycle.size == 4
    np.testing.assert_array_equal(outputs.cycle, 5 + 3 + outputs.row + outputs.col + 1)
    expected = gemm(a[:, :4], w[:4], s[:4], config.fmt_a, config.fmt_w)
    np.testing.assert_array_equal(outputs.bits.view(np.float32), expected[outputs.row, outputs.col])


def test_reset_mid_drain_drops_exactly_the_outputs_still_in_flight(rng: np.random.Generator) -> None:
    config, a, w, s = random_gemm(rng, 4, 5, 4)
    stream, tiles = schedule_gemm(a, w, s, 4, 4)
    last = tiles[0].last_cycle
    stream.rst[last + 3] = 1  # PEs with r + c <= 2 have pulsed by then; the rest are cleared
    outputs = fp4_array(stream, config)
    assert sorted(zip(outputs.row, outputs.col, strict=True)) == sorted(
        (r, c) for r in range(4) for c in range(4) if r + c <= 2
    )
    expected = gemm(a, w, s, config.fmt_a, config.fmt_w)
    np.testing.assert_array_equal(outputs.bits.view(np.float32), expected[outputs.row, outputs.col])


def test_port_trace_holds_data_and_clears_on_reset(rng: np.random.Generator) -> None:
    config, a, w, s = random_gemm(rng, 2, 3, 2)
    stream, _ = schedule_gemm(np.concatenate([a, a]), w, s, 2, 2)  # two tiles, in_last at edges 2 and 5
    stream.rst[9] = 1
    valid, data = port_trace(stream, fp4_array(stream, config))
    assert valid.shape == data.shape == (stream.cycles + 1, 2, 2)
    first = gemm(a, w, s, config.fmt_a, config.fmt_w).view(np.uint32)
    assert not data[:3].any() and not valid[:3].any()  # nothing before the first pulse (edge 3)
    assert valid[3, 0, 0] and not valid[4, 0, 0]  # one-edge pulse
    np.testing.assert_array_equal(data[4, 0, 0], first[0, 0])  # held after the pulse
    assert [int(valid[t, 1, 1]) for t in range(3, 10)] == [0, 0, 1, 0, 0, 1, 0]  # edges 2+2+1 and 5+2+1
    np.testing.assert_array_equal(data[9], first)  # both tiles are the same GEMM
    assert not data[10:].any()  # reset at edge 9 clears out_data from edge 10


def test_k_over_k_max_and_bad_streams_are_rejected() -> None:
    zero = np.zeros((2, 5), np.uint8)
    with pytest.raises(ValueError, match="K_max"):
        array_gemm(zero, zero.T.copy(), None, "E2M1", "E2M1", k_max=4)
    with pytest.raises(ValueError, match="rows >= 1"):
        array_gemm(zero, zero.T.copy(), None, "E2M1", "E2M1", rows=0)
    stream = idle_inputs(4, 2, 2)
    stream.s_in[1] = 4
    with pytest.raises(ValueError, match="s_in"):
        fp4_array(stream, PEConfig.make("E2M1", "E2M1"))
