"""The bulk path of the block-scaled array (tb/fp4_block_array_player.sv, fp4sim.rtlsim.player) against the
cycle-accurate golden model: a whole stream of random MXFP4 / NVFP4 GEMMs with extreme scale codes, bubbles with
junk data and resets goes to the simulator at once; every output pulse that comes back (edge, row, column, bits)
must equal fp4sim.hw.fp4_block_array's (docs/spec.md 8.7)."""

from __future__ import annotations

import numpy as np
import pytest
from block_streams import random_block_gemms, with_block_bubbles, with_block_resets

from fp4sim.hw.fp4_block_array import BlockArrayOutputs, fp4_block_array
from fp4sim.hw.fp4_pkg import BlockConfig
from fp4sim.rtlsim.player import in_edge_order, play_stream

PLAYER_BUILDS = [  # a ragged MXFP4 exact array (533-bit accumulators, 2-bit out_row); NVFP4 Blackwell, one row
    (BlockConfig("mxfp4"), 3, 2),
    (BlockConfig("nvfp4", "aligned_truncate", 35, 4), 1, 2),
]


@pytest.mark.parametrize("build", PLAYER_BUILDS, ids=lambda b: f"{b[0].block_format}-{b[0].acc_mode}-{b[1]}x{b[2]}")
def test_fp4_block_array_player(build: tuple, simulator: str) -> None:
    config, rows, cols = build
    rng = np.random.default_rng(23)
    stream = with_block_resets(rng, with_block_bubbles(rng, random_block_gemms(rng, config, rows, cols, 12)), 3)
    run = play_stream(stream, config.rtl_parameters(rows, cols), simulator)
    golden = in_edge_order(fp4_block_array(stream, config))
    assert isinstance(run.outputs, BlockArrayOutputs) and run.edges == stream.cycles
    assert golden.cycle.size > 6 * rows * cols  # the resets leave most tiles whole
    for field in BlockArrayOutputs._fields:
        np.testing.assert_array_equal(getattr(run.outputs, field), getattr(golden, field), err_msg=field)
    assert run.outputs.bits.dtype == np.uint32
