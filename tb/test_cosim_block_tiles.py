"""fp4_block_array on real tiles of a block-quantized model (fp4sim cosim on an MXFP4 / NVFP4 export): every output,
after NVFP4's tensor-scale epilogue, equals fp4sim.block_gemm's bits under the array's accumulation model, and every
output pulse arrives on the edge the cycle-accurate model gives (docs/spec.md 8.7, 8.8).

The tiles, their block_gemm results and the model's pulse list come from fp4sim.e2e.cosim in an .npz; the bench
plays the stream and writes what it compared to a JSON file for the command to report. The pytest tests run the
bundled model's MXFP4 and NVFP4 exports through it: down_proj, K = 688, not a multiple of MXFP4's 32-element block.
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
import pytest
from test_cosim_tiles import quantize_bundled

import fp4sim.e2e.cosim
from fp4sim.cli import main
from fp4sim.e2e.cosim import DATA_ENV, judge_tiles, run_cosim
from fp4sim.e2e.rtl_forward import forward_on_rtl
from fp4sim.hw.fp4_block_array import BlockArrayInputs, BlockArrayOutputs, BlockTile, collect_block_tiles
from fp4sim.quant.config import QuantConfig
from fp4sim.rtlsim.block_array_driver import play_block

LAYER = "model.layers.1.mlp.down_proj"
ROWS = COLS = 2
MODES = ["exact", "aligned_truncate:35", "aligned_truncate:13:16"]


@cocotb.test()
async def model_tiles(dut) -> None:
    data = np.load(os.environ[DATA_ENV])
    stream = BlockArrayInputs(*(data[field] for field in BlockArrayInputs._fields))
    expected = data["expected"]  # (tiles, R, C) FP32 bits from fp4sim.block_gemm, tensor scales included
    pulses = sorted(await play_block(dut, stream))
    outputs = BlockArrayOutputs(*(np.array(column, dtype=np.int64) for column in zip(*pulses, strict=True)))
    tiles = [BlockTile(*map(int, tile)) for tile in data["tiles"]]  # tile j at rows j R .. of a (tiles R, C) result
    count, rows, cols = expected.shape
    try:
        z = collect_block_tiles(outputs, tiles, count * rows, cols, rows, cols).reshape(expected.shape)
        y = z * np.float32(data["alpha"])  # NVFP4's tensor scales, the epilogue outside the array (1 for MXFP4)
        mismatches = int((y.view(np.uint32) != expected).sum())
    except RuntimeError:  # a PE pulsed too often or too rarely: nothing can be matched to its tile
        mismatches = int(expected.size)
    judge_tiles(pulses, data, mismatches, "fp4sim.block_gemm")
    dut._log.info("%d tiles, %d outputs match block_gemm; %d pulses on the model's edges", count, y.size, len(pulses))


@pytest.fixture(scope="module", params=["mxfp4", "nvfp4"])
def block_export(request, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(method, model, 16 token ids, export directory) of the bundled model's MXFP4 or NVFP4 export."""
    model, ids, export = quantize_bundled(tmp_path_factory, QuantConfig(method=request.param, calib_samples=4))
    return request.param, model, ids[:16], export


@pytest.mark.slow
@pytest.mark.parametrize("accum", MODES)
def test_bundled_model_block_tiles_through_the_rtl(block_export: tuple, accum: str, simulator: str) -> None:
    """Three 2 x 2 tiles of down_proj (the first, a middle and the last of its output grid), the full K = 688
    (43 groups, 21.5 MXFP4 blocks: a ragged last block) per tile."""
    method, model, ids, _ = block_export
    layer = model.get_submodule(LAYER).hardware
    assert layer.in_features == 688 and layer.weight.fmt.name == method
    result = run_cosim(model, LAYER, ids, tiles=3, rows=ROWS, cols=COLS, simulator=simulator, accum=accum)
    assert (result.array, result.accum, result.tiles) == ("fp4_block_array", accum, 3)
    assert result.passed and result.outputs == result.pulses == 3 * ROWS * COLS
    assert result.edges == 1 + 3 * 43 + ROWS + COLS + 2  # reset, three tiles of K / 16 groups, drain (spec 8.8)


@pytest.mark.slow
def test_a_wrong_expected_value_is_caught(block_export: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: with block_gemm's last output of every tile off by one ULP, the bench reports
    exactly those outputs (and the run fails), outside pytest's harness as the fp4sim command sees it."""
    _, model, ids, _ = block_export
    true_block_gemm = fp4sim.e2e.cosim.block_gemm

    def off_by_one_ulp(a, w, **kwargs):
        y = true_block_gemm(a, w, **kwargs)
        y.view(np.uint32)[-1, -1] ^= 1
        return y

    monkeypatch.setattr(fp4sim.e2e.cosim, "block_gemm", off_by_one_ulp)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # cocotb's runner then reports the failure instead of exiting
    result = run_cosim(model, LAYER, ids, tiles=2, rows=ROWS, cols=COLS)
    assert not result.passed and result.mismatches == 2 and "FAIL=1" in result.summary


@pytest.mark.slow
def test_cosim_command_on_a_block_export(block_export: tuple, tmp_path: Path, capsys) -> None:
    """`fp4sim cosim --layer L --accum exact,aligned_truncate:35` on the export: one line per accumulation model."""
    *_, export = block_export
    argv = ["cosim", "--quantized", str(export), "--layer", LAYER, "--tiles", "1", "--rows", "2", "--cols", "2"]
    assert main([*argv, "--accum", "exact,aligned_truncate:35"]) == 0
    out = capsys.readouterr().out
    assert out.count("through rtl/fp4_block_array.sv") == 2 and "aligned_truncate:35" in out
    assert out.count("4 outputs vs fp4sim.block_gemm, all bit-identical") == 2


@pytest.mark.slow
@pytest.mark.parametrize("accum", ["exact", "aligned_truncate:35"])
def test_bundled_model_block_forward_on_the_rtl(block_export: tuple, accum: str) -> None:
    """An 8-token forward with all 29 block-quantized linear layers on a 4 x 4 Verilated fp4_block_array (bulk
    player): every layer bit-identical to fp4sim.block_gemm under `accum` and to the reference path (torch when
    exact, else the simulator under `accum`), and so the logits (the short variant of `fp4sim cosim --forward`)."""
    _, model, ids, _ = block_export
    result = forward_on_rtl(model, ids[:8], rows=4, cols=4, simulator="verilator", accum=accum)
    assert [run.layer for run in result.layers][-1] == "lm_head" and len(result.layers) == 29
    assert all(run.array_mismatches == 0 and run.torch_mismatches == 0 for run in result.layers)
    assert result.logits_count == 8 * model.config.vocab_size and result.logits_mismatches == 0
    assert result.perplexity_rtl == result.perplexity_torch and result.passed
    q_proj, down_proj = result.layers[0], result.layers[6]
    assert q_proj.shape == (8, 256, 256) and down_proj.shape == (8, 688, 256)
    assert q_proj.cycles == 1 + (8 // 4) * (256 // 4) * (256 // 16) + 4 + 4 + 2  # reset, tiles x K groups, drain
    assert down_proj.cycles == 1 + (8 // 4) * (256 // 4) * 43 + 4 + 4 + 2  # 688 = 43 groups, the last block ragged
    assert all(module.backend == "torch" for module in model.modules() if hasattr(module, "backend"))  # restored
