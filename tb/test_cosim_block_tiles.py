"""fp4_block_array on tiles of a real layer: the bundled model's MXFP4 and NVFP4 exports, down_proj (K = 688, not a
multiple of MXFP4's 32-element block), its activations block-quantized as the layer does (docs/spec.md 7.6), under
every accumulator mode. Every output pulse must arrive with the cycle-accurate model's edge and bits, and every
result, after NVFP4's tensor-scale epilogue, must equal fp4sim.block_gemm's bits (spec 8.8)."""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
import pytest
from test_cosim_tiles import quantize_bundled

from fp4sim.codec.blockscaled import BlockTensor
from fp4sim.e2e.cosim import layer_input
from fp4sim.gemm.block import block_gemm
from fp4sim.hw.fp4_block_array import (
    BlockArrayInputs,
    BlockArrayOutputs,
    BlockTile,
    collect_block_tiles,
    fp4_block_array,
    schedule_block_gemm,
    stitch_block_streams,
)
from fp4sim.hw.fp4_pkg import BlockConfig
from fp4sim.quant.blockquant import quantize_input
from fp4sim.quant.config import QuantConfig
from fp4sim.rtlsim.block_array_driver import play_block
from fp4sim.rtlsim.runner import run_testbench

DATA_ENV = "FP4SIM_BLOCK_TILES"  # the .npz the pytest side writes for the cocotb side
LAYER = "model.layers.1.mlp.down_proj"
ROWS = COLS = 2
MODES = [("exact", 35, 4), ("aligned_truncate:35", 35, 4), ("aligned_truncate:13:16", 13, 1)]


@cocotb.test()
async def model_tiles(dut) -> None:
    data = np.load(os.environ[DATA_ENV])
    stream = BlockArrayInputs(*(data[field] for field in BlockArrayInputs._fields))
    pulses = sorted(await play_block(dut, stream))
    assert pulses == sorted(map(tuple, data["golden"].tolist())), "pulses differ from the cycle-accurate model"
    outputs = BlockArrayOutputs(*(np.array(column, dtype=np.int64) for column in zip(*pulses, strict=True)))
    tiles = [BlockTile(*map(int, tile)) for tile in data["tiles"]]
    expected = data["expected"]
    z = collect_block_tiles(outputs, tiles, *expected.shape, ROWS, COLS)
    y = z * np.float32(data["alpha"])  # NVFP4's tensor scales, the epilogue outside the array (1 for MXFP4)
    mismatches = int((y.view(np.uint32) != expected).sum())
    assert mismatches == 0, f"{mismatches} of {expected.size} outputs differ from block_gemm"
    dut._log.info("%d outputs of %s match block_gemm; %d pulses on the model's edges", y.size, LAYER, len(pulses))


@pytest.fixture(scope="module", params=["mxfp4", "nvfp4"])
def layer_operands(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[BlockTensor, BlockTensor]:
    """(activations, weight) of LAYER: 2 R tokens and 2 C output channels, all of K."""
    model, ids = quantize_bundled(tmp_path_factory, QuantConfig(method=request.param, calib_samples=4))
    layer = model.get_submodule(LAYER).hardware
    a = quantize_input(layer, layer_input(model, LAYER, ids[:16]))
    w = layer.weight
    a = BlockTensor(a.fmt, a.codes[: 2 * ROWS], a.scales[: 2 * ROWS], a.tensor_scale)
    w = BlockTensor(w.fmt, w.codes[: 2 * COLS], w.scales[: 2 * COLS], w.tensor_scale)
    return a, w


@pytest.mark.slow
@pytest.mark.parametrize(("accum", "frac_bits", "fused"), MODES, ids=[m[0] for m in MODES])
def test_bundled_model_block_tiles_through_the_rtl(
    layer_operands: tuple, accum: str, frac_bits: int, fused: int, simulator: str, tmp_path: Path
) -> None:
    a, w = layer_operands
    assert a.shape[1] == 688  # 21.5 MXFP4 blocks: a ragged last block
    config = BlockConfig(a.fmt.name, accum.split(":")[0], frac_bits, fused)
    stream, tiles = schedule_block_gemm(a, w, ROWS, COLS)
    stream = stitch_block_streams([stream])
    tiles = [tile._replace(last_cycle=tile.last_cycle + 1) for tile in tiles]  # after the reset edge
    golden = fp4_block_array(stream, config)
    expected = block_gemm(a, w, accum=accum).view(np.uint32)
    assert np.count_nonzero(expected) > expected.size // 2  # real data, not padding
    data = tmp_path / "tiles.npz"
    np.savez(
        data, **stream._asdict(), golden=np.stack([golden.cycle, golden.row, golden.col, golden.bits]).T,
        tiles=np.array(tiles), expected=expected, alpha=np.float32(a.tensor_scale * w.tensor_scale),
    )  # fmt: skip
    params = config.rtl_parameters(ROWS, COLS)
    run_testbench("fp4_block_array", "test_cosim_block_tiles", params, {DATA_ENV: str(data)}, simulator=simulator)
