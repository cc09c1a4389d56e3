"""fp4_array on real tiles of a quantized model (fp4sim cosim): every output equals fp4sim.gemm bit for bit, and
every output pulse arrives on the edge the cycle-accurate model gives.

The tiles, their gemm results and the model's pulse list come from fp4sim.e2e.cosim in an .npz; the bench plays
the stream and writes what it compared to a JSON file for the command to report.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
import pytest

from fp4sim.e2e.cosim import DATA_ENV, judge_tiles, run_cosim
from fp4sim.e2e.rtl_forward import forward_on_rtl
from fp4sim.hw.fp4_array import ArrayInputs
from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.models.perplexity import tokenize_text
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.quantize import quantize_checkpoint
from fp4sim.rtlsim.array_driver import play
from fp4sim.rtlsim.runner import tb_params


@cocotb.test()
async def model_tiles(dut) -> None:
    p = tb_params()
    data = np.load(os.environ[DATA_ENV])
    stream = ArrayInputs(*(data[field] for field in ArrayInputs._fields))
    expected = data["expected"]  # (tiles, R, C) FP32 bits from fp4sim.gemm
    pulses = sorted(await play(dut, stream, p))
    got = np.zeros_like(expected)
    seen = np.zeros(expected.shape[1:], dtype=np.int64)
    for _, row, col, bits in pulses:  # in edge order: the k-th pulse of a PE is tile k's output
        if seen[row, col] < len(expected):
            got[seen[row, col], row, col] = bits
        seen[row, col] += 1
    mismatches = int((got != expected).sum()) + int(np.abs(seen - len(expected)).sum())
    judge_tiles(pulses, data, mismatches, "fp4sim.gemm")
    dut._log.info(
        "%d tiles, %d outputs match fp4sim.gemm; %d pulses on the model's edges", len(got), got.size, len(pulses)
    )


def quantize_bundled(tmp_path_factory: pytest.TempPathFactory, config: QuantConfig) -> tuple:
    """The bundled model quantized by `config`, 64 tokens of its validation text, and the export's directory."""
    text = (DEFAULT_MODEL.parent / "shakespeare" / "valid.txt").read_text(encoding="utf-8")
    export = quantize_checkpoint(DEFAULT_MODEL, text, config, tmp_path_factory.mktemp("q") / "export", progress=False)
    model, tokenizer, _ = load_export(export)
    return model, tokenize_text(tokenizer, text)[:64], export


@pytest.fixture(scope="module")
def bundled_export(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """fpq 4/4/4 with a short search."""
    return quantize_bundled(tmp_path_factory, QuantConfig(method="fpq", grid_points=10, rounds=1, calib_samples=4))


@pytest.fixture(scope="module")
def bundled_export_attention(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """minmax 4/4/4 (no search: seconds) with the inputs of Q K^T and P V quantized too (--quantize-attention)."""
    return quantize_bundled(tmp_path_factory, QuantConfig(method="minmax", calib_samples=4, quantize_attention=True))


@pytest.mark.slow
def test_bundled_model_tiles_through_the_rtl(bundled_export: tuple, simulator: str) -> None:
    """Two 4 x 4 tiles (K = 688) of the bundled model's down_proj, fpq 4/4/4, through the Verilog array."""
    model, ids, _ = bundled_export
    result = run_cosim(model, "model.layers.1.mlp.down_proj", ids, tiles=2, simulator=simulator)
    assert result.passed and result.outputs == 2 * 16 and result.pulses == 2 * 16
    assert result.edges > 2 * 688  # the layer's full K streamed per tile


@pytest.mark.slow
def test_bundled_model_forward_on_the_rtl(bundled_export: tuple) -> None:
    """A 16-token forward with all 29 quantized linear layers on a 4 x 4 Verilated array (bulk player): every
    layer bit-identical to fp4sim.gemm and to the torch path, and so the logits (the short variant of
    `fp4sim cosim --forward`)."""
    model, ids, _ = bundled_export
    result = forward_on_rtl(model, ids[:16], rows=4, cols=4, simulator="verilator")
    assert [run.layer for run in result.layers][-1] == "lm_head" and len(result.layers) == 29
    assert all(run.array_mismatches == 0 and run.torch_mismatches == 0 for run in result.layers)
    assert result.logits_count == 16 * model.config.vocab_size and result.logits_mismatches == 0
    assert result.perplexity_rtl == result.perplexity_torch and result.passed
    q_proj = result.layers[0]
    assert q_proj.shape == (16, 256, 256)
    assert q_proj.cycles == 1 + (16 // 4) * (256 // 4) * 256 + 4 + 4 + 1  # reset, tiles x K, drain (spec 3.4)


@pytest.mark.slow
def test_bundled_model_attention_on_the_rtl(bundled_export_attention: tuple) -> None:
    """With the attention matmuls quantized, a 4-token forward on a 4 x 4 Verilated array: Q K^T and P V of every
    layer, one GEMM per head stitched into one run, bit-identical to fp4sim.gemm and to the torch path, beside the
    29 linear layers, and so the logits."""
    model, ids, _ = bundled_export_attention
    result = forward_on_rtl(model, ids[:4], rows=4, cols=4, simulator="verilator")
    attention = [run for run in result.layers if run.layer.endswith((".scores", ".context"))]
    assert len(attention) == 8 and len(result.layers) == 29 + 8
    assert [run.layer for run in attention[:2]] == [
        "model.layers.0.self_attn.scores",
        "model.layers.0.self_attn.context",
    ]
    heads, head_dim = model.config.num_attention_heads, model.config.head_dim
    assert all(run.slices == heads and run.identical for run in attention)
    scores, context = attention[:2]
    assert scores.shape == (4, head_dim, 4) and context.shape == (4, 4, head_dim)
    assert scores.cycles == 1 + heads * head_dim + 4 + 4 + 1  # reset, one tile of K = head_dim per head, drain
    assert context.cycles == 1 + heads * (head_dim // 4) * 4 + 4 + 4 + 1  # head_dim / C tiles of K = 4 keys per head
    assert result.logits_mismatches == 0 and result.passed
