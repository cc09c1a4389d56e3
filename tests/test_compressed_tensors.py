"""compressed-tensors checkpoints (docs/spec.md 7.8): fp4sim's export read back by the library, the library's own
checkpoints run on fp4sim's simulator bit for bit, the global-scale convention against a Fraction reference."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from ct_checkpoints import library_checkpoint
from hypothesis import given
from hypothesis import strategies as st
from oracle import round_float
from tiny_models import tiny_decoder
from transformers import AutoModelForCausalLM, AutoTokenizer

from fp4sim.codec import decode
from fp4sim.codec.blockscaled import ELEMENT, block_dequantize, block_quantize
from fp4sim.e2e.simulate import simulate_model
from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.models.perplexity import tokenize_text
from fp4sim.quant.compressed.codec import CompressedTensorsError, global_scale, tensor_scale
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.modules import BlockQuantizedLinear
from fp4sim.quant.quantize import quantize_checkpoint

pytest.importorskip("compressed_tensors")

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 4


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaMA whose every linear layer is a whole number of MXFP4 blocks (intermediate 64), tied embeddings."""
    path = tmp_path_factory.mktemp("ct") / "tiny"
    tiny_decoder("llama", vocab=4096, intermediate_size=64, tie_word_embeddings=True).save_pretrained(path)
    AutoTokenizer.from_pretrained(DEFAULT_MODEL).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["nvfp4", "mxfp4"])
def exported(request: pytest.FixtureRequest, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ct") / request.param
    config = QuantConfig(method=request.param, calib_samples=2, calib_length=32)
    return quantize_checkpoint(source, TEXT, config, out, progress=False, export_format="compressed-tensors")


def _method(path: Path) -> str:
    return path.name


def test_export_decompresses_to_fp4sim_weights(exported: Path, source: Path) -> None:
    """The library (through transformers' compressed-tensors loader) decompresses every layer to fp4sim's codes and
    scales: MXFP4 to fp4sim's dequantized weight exactly, NVFP4 to it rounded to bfloat16, the dtype the library
    decompresses through (spec 7.8)."""
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
    from safetensors.torch import load_file
    from transformers import CompressedTensorsConfig

    loaded = AutoModelForCausalLM.from_pretrained(
        exported, quantization_config=CompressedTensorsConfig(run_compressed=False)
    )
    original = AutoModelForCausalLM.from_pretrained(source)
    stored = load_file(exported / "model.safetensors")
    names = [n for n, m in original.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(names) == 15  # 7 per layer and lm_head
    for name in names:
        fp4sim_weight = block_quantize(original.get_submodule(name).weight.detach(), _method(exported))
        dequantized = torch.from_numpy(block_dequantize(fp4sim_weight))
        library = loaded.get_submodule(name).weight.detach()
        expected = dequantized if _method(exported) == "mxfp4" else dequantized.bfloat16().float()
        assert torch.equal(library, expected), name
        packed = stored[f"{name}.weight_packed"]
        values = unpack_fp4_from_uint8(packed, *fp4sim_weight.shape, dtype=torch.float32).numpy()
        np.testing.assert_array_equal(values.view(np.uint32), decode(fp4sim_weight.codes, ELEMENT).view(np.uint32))
        np.testing.assert_array_equal(stored[f"{name}.weight_scale"].view(torch.uint8).numpy(), fp4sim_weight.scales)


def test_export_records_the_schemes_vllm_reads(exported: Path) -> None:
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file

    raw = json.loads((exported / "config.json").read_text())["quantization_config"]
    config = QuantizationConfig.model_validate(raw)
    nvfp4 = _method(exported) == "nvfp4"
    assert raw["quant_method"] == "compressed-tensors"
    assert config.format == ("nvfp4-pack-quantized" if nvfp4 else "mxfp4-pack-quantized")
    assert config.quantization_status == "compressed"
    (scheme,) = config.config_groups.values()
    assert len(scheme.targets) == 15 and "lm_head" in scheme.targets
    assert (scheme.weights.group_size, scheme.weights.strategy) == ((16, "tensor_group") if nvfp4 else (32, "group"))
    assert scheme.input_activations.dynamic == ("local" if nvfp4 else True)
    stored = load_file(exported / "model.safetensors")
    key = "model.layers.0.mlp.down_proj"
    assert (f"{key}.input_global_scale" in stored) == nvfp4
    assert (f"{key}.weight_global_scale" in stored) == nvfp4
    assert stored["model.embed_tokens.weight"].dtype == torch.float32


def test_an_fp4sim_export_reimports_with_its_codes(exported: Path, source: Path) -> None:
    """Read back by fp4sim, each layer holds the codes and block scales fp4sim wrote, the tensor scale
    fp32(1 / fp32(1 / s_t)), and its simulator agrees with its torch path bit for bit."""
    model, tokenizer, metadata = load_export(exported)
    original = AutoModelForCausalLM.from_pretrained(source)
    assert metadata["format"] == "compressed-tensors"
    layer = model.get_submodule("model.layers.1.self_attn.o_proj")
    assert isinstance(layer, BlockQuantizedLinear)
    expected = block_quantize(
        original.get_submodule("model.layers.1.self_attn.o_proj").weight.detach(), _method(exported)
    )
    np.testing.assert_array_equal(layer.layer.weight.codes, expected.codes)
    np.testing.assert_array_equal(layer.layer.weight.scales, expected.scales)
    assert layer.layer.weight.tensor_scale == np.float32(1) / (np.float32(1) / expected.tensor_scale)
    ids = tokenize_text(tokenizer, TEXT)[:48]
    assert simulate_model(model, ids, "exact", context=24, progress=False).all_identical


@pytest.mark.parametrize("preset", ["NVFP4", "MXFP4", "NVFP4A16"])
def test_a_library_checkpoint_runs_bit_for_bit(preset: str, source: Path, tmp_path: Path) -> None:
    """A checkpoint the compressed-tensors library made: codes, block scales and global scales decoded bit for bit
    (spec 7.8), and the simulator equal to the torch path in every layer (W4A4; W4A16 runs on torch only)."""
    from safetensors.torch import load_file

    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = tokenize_text(tokenizer, TEXT)[:48]
    original = AutoModelForCausalLM.from_pretrained(source)
    out = library_checkpoint(original, tokenizer, preset, ids[None, :24], tmp_path / preset)
    stored = load_file(out / "model.safetensors")
    model, _, _ = load_export(out)
    name = "model.layers.0.mlp.gate_proj"
    layer = model.get_submodule(name).layer
    packed = stored[f"{name}.weight_packed"].numpy()
    np.testing.assert_array_equal(layer.weight.codes[:, 0::2] | layer.weight.codes[:, 1::2] << 4, packed)
    np.testing.assert_array_equal(layer.weight.scales, stored[f"{name}.weight_scale"].view(torch.uint8).numpy())
    if preset.startswith("NVFP4"):
        divisor = float(stored[f"{name}.weight_global_scale"])
        assert float(layer.weight.tensor_scale) == round_float(1 / Fraction(divisor), "fp32")
    assert (layer.input_format is None) == preset.endswith("A16")
    assert isinstance(model.get_submodule("lm_head"), torch.nn.Linear)  # ignored: stays in floating point
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tied, stored once
    if preset.endswith("A16"):
        assert torch.isfinite(model(ids[None]).logits).all()
    else:
        assert simulate_model(model, ids, "exact", context=24, progress=False).all_identical


@given(st.floats(min_value=2.0**-126, max_value=2.0**126, width=32))
def test_global_scale_is_a_rounded_reciprocal(s_t: float) -> None:
    """g = RN_fp32(1 / s_t) on export and s_t' = RN_fp32(1 / g) on import, against exact Fractions (spec 7.8)."""
    g = global_scale(np.float32(s_t))
    assert float(g) == round_float(1 / Fraction(s_t), "fp32")
    assert float(tensor_scale(g, "w")) == round_float(1 / Fraction(float(g)), "fp32")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), 2.0**-140])
def test_bad_global_scales_are_refused(bad: float) -> None:
    with pytest.raises(CompressedTensorsError, match="w"):
        tensor_scale(np.float32(bad), "w")
