"""The bulk path (tb/fp4_array_player.sv, fp4sim.rtlsim.player) against the cycle-accurate golden model: a whole
stream of random GEMMs, bubbles with junk data and resets goes to the simulator at once; every output pulse that
comes back (edge, PE, bits) must equal fp4sim.hw.fp4_array's."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from array_streams import ARRAY_BUILDS, build_config, build_id, random_gemms, with_bubbles, with_resets

from fp4sim.hw.fp4_array import ArrayOutputs, fp4_array
from fp4sim.rtlsim.player import build_player, hex_digits, in_edge_order, play_stream, write_stimulus
from fp4sim.rtlsim.runner import array_parameters

PLAYER_BUILDS = [ARRAY_BUILDS[0], ARRAY_BUILDS[2]]  # the default array; a ragged BF16 one with 3-bit-wide buses


@pytest.mark.parametrize("build", PLAYER_BUILDS, ids=build_id)
def test_fp4_array_player(build: tuple, simulator: str) -> None:
    config, (rows, cols, out) = build_config(build), build[4:]
    rng = np.random.default_rng(21)
    stream = with_resets(rng, with_bubbles(config, rng, random_gemms(rng, config, rows, cols, 30)), 5)
    run = play_stream(stream, array_parameters(config, rows, cols, out), simulator)
    golden = in_edge_order(fp4_array(stream, config, out))
    assert run.edges == stream.cycles
    assert golden.cycle.size > 20 * rows * cols  # the resets leave most tiles whole
    for field in ArrayOutputs._fields:
        np.testing.assert_array_equal(getattr(run.outputs, field), getattr(golden, field), err_msg=field)
    assert run.outputs.bits.dtype == golden.bits.dtype


def test_stimulus_bus_layout() -> None:
    """Lane i sits at bits [i*width +: width] of the bus, as the ports of spec 3.1 say; hex digits MSB first."""
    lanes = np.array([[0x1, 0x2, 0xF], [0x9, 0x0, 0x3]], np.uint8)
    assert hex_digits(lanes, 4).tobytes() == b"f21" + b"309"
    assert hex_digits(lanes[:, :2], 3).tobytes() == b"11" + b"01"  # 0b010_001, 0b000_001
    assert hex_digits(np.array([[5]], np.uint8), 3).tobytes() == b"5"


def test_player_refuses_a_stream_of_another_shape() -> None:
    config = build_config(ARRAY_BUILDS[0])
    stream = random_gemms(np.random.default_rng(0), config, 4, 4, 1)
    with pytest.raises(ValueError, match="4 x 4 lanes, the array is 2 x 4"):
        play_stream(stream, array_parameters(config, 2, 4))


def test_player_stops_on_x(tmp_path) -> None:
    """Under Icarus (four-state) an output that is X stops the run: here no reset, so every register starts X."""
    config = build_config(ARRAY_BUILDS[0])
    params = array_parameters(config, 4, 4)
    stream = random_gemms(np.random.default_rng(1), config, 4, 4, 1)
    stream.rst[0] = 0
    stimulus = tmp_path / "stimulus.hex"
    write_stimulus(stream, params, stimulus)
    command = build_player(params, "icarus")
    done = subprocess.run([*command, f"+stimulus={stimulus}", f"+pulses={tmp_path / 'p.txt'}"], capture_output=True)
    assert b"X/Z on the outputs at edge 1" in done.stdout + done.stderr
