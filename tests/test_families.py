"""Every supported decoder family (models.checkpoint.DECODER_MODEL_TYPES) through every path: a tiny random model
of each, from transformers' own config class, quantizes (LLM-FP4, MinMax and NVFP4, with and without quantized
attention), exports, and runs on torch and on the simulator with the same bits in every quantized layer and in the
logits; fp4sim's attention function is eager attention, and calibration sees the inputs the model feeds each layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import FAMILY_SETTINGS, tiny_decoder
from transformers import AutoModelForCausalLM, AutoTokenizer

from fp4sim.e2e.simulate import AgreementMonitor
from fp4sim.models.checkpoint import DECODER_MODEL_TYPES, DEFAULT_MODEL, load_pretrained
from fp4sim.quant.attention import use_fp4sim_attention
from fp4sim.quant.calibrate import layer_inputs
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.quantize import quantize_checkpoint

FAST = {"grid_points": 3, "rounds": 1, "calib_samples": 2, "calib_length": 32, "search_tokens": 32}
CALIB_TEXT = (DEFAULT_MODEL.parent / "shakespeare" / "valid.txt").read_text(encoding="utf-8")[:8000]
VOCAB = 4096  # the bundled tokenizer's


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().view(np.uint32)


def test_every_supported_family_is_tested() -> None:
    assert set(FAMILY_SETTINGS) == set(DECODER_MODEL_TYPES)


# Every setting on the families that differ most in their attention (biases, sliding windows, q/k norms, no RoPE);
# the others run MinMax with quantized attention: every module kind that depends on the family (the linear layers,
# the embedding, the attention function), without the search's time. NVFP4's kinds are the same nn.Linear in all.
FPQ = {"method": "fpq"}
NVFP4 = {"method": "nvfp4"}
FPQ_ATTENTION = {"method": "fpq", "quantize_attention": True}
MINMAX_ATTENTION = {"method": "minmax", "quantize_attention": True}
EVERY_SETTING = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
CASES = [
    (model_type, settings)
    for model_type in DECODER_MODEL_TYPES
    for settings in ((FPQ, NVFP4, FPQ_ATTENTION) if model_type in EVERY_SETTING else (MINMAX_ATTENTION,))
]


@pytest.fixture(scope="module")
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(model_type, checkpoint directory): the tiny model of the family with the bundled tokenizer."""
    path = tmp_path_factory.mktemp(request.param) / "ckpt"
    tiny_decoder(request.param, vocab=VOCAB, **FAMILY_SETTINGS[request.param]).save_pretrained(path)
    AutoTokenizer.from_pretrained(DEFAULT_MODEL).save_pretrained(path)
    return request.param, path


def _ids(seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("family", "settings"), CASES, indirect=["family"], ids=[f"{f}-{'-'.join(map(str, s.values()))}" for f, s in CASES]
)
def test_family_exports_run_the_same_bits_on_torch_and_simulator(
    family: tuple[str, Path], tmp_path: Path, settings: dict
) -> None:
    """Every quantized layer's output and the logits are the same bits on both paths; attention biases and every
    norm weight (q/k norms included) come back as the source model's."""
    model_type, checkpoint = family
    out = quantize_checkpoint(checkpoint, CALIB_TEXT, QuantConfig(**settings, **FAST), tmp_path / "q", progress=False)
    on_torch, _, metadata = load_export(out)
    on_simulator, _, _ = load_export(out, backend="simulator")
    assert on_torch.config.model_type == model_type and metadata["source_model"] == str(checkpoint)
    attention = sum(entry["kind"] == "attention" for entry in metadata["modules"].values())
    assert attention == (2 if settings.get("quantize_attention") else 0)
    ids = _ids(1)
    monitor = AgreementMonitor().attach(on_simulator)  # each layer's torch path on the simulator's input
    with torch.no_grad():
        assert np.array_equal(bits(on_torch(ids).logits), bits(on_simulator(ids).logits))
    layers = list(monitor.layers.values())
    matmuls = 2 * attention  # Q K^T and P V of each quantized attention, compared on their own operands
    assert len(layers) == 7 * 2 + 1 + matmuls
    assert all(layer.outputs and layer.identical == layer.outputs for layer in layers)
    original = AutoModelForCausalLM.from_pretrained(checkpoint)
    for name, parameter in original.named_parameters():
        module, _, field = name.rpartition(".")
        if field == "bias" and module in metadata["modules"]:
            assert torch.equal(on_torch.get_submodule(module).hardware.bias, parameter), name
        elif "norm" in module:
            assert torch.equal(on_torch.get_parameter(name), parameter), name


@pytest.mark.parametrize("family", DECODER_MODEL_TYPES, indirect=True)
def test_fp4sim_attention_is_eager_attention(family: tuple[str, Path]) -> None:
    """With nothing quantized, the attention function fp4sim registers gives eager attention's logits bit for bit
    (grouped-query heads, q/k norms, sliding-window masks through the registered mask interface)."""
    _, checkpoint = family
    model, _ = load_pretrained(checkpoint)
    model.set_attn_implementation("eager")
    ids = _ids(2)
    with torch.no_grad():
        eager = model(ids).logits
        use_fp4sim_attention(model)
        assert np.array_equal(bits(model(ids).logits), bits(eager))


@pytest.mark.parametrize("family", DECODER_MODEL_TYPES, indirect=True)
def test_calibration_sees_what_the_model_feeds_each_layer(family: tuple[str, Path]) -> None:
    """Chaining the layers on the collected inputs gives the model's own hidden states, also where layers of one model
    get different masks (qwen2 here: full attention, then a sliding window shorter than the text)."""
    _, checkpoint = family
    model, _ = load_pretrained(checkpoint)
    ids = _ids(3)
    with torch.no_grad():
        expected = model(ids, output_hidden_states=True).hidden_states
        hidden, calls = layer_inputs(model, ids)
        for index, (layer, layer_calls) in enumerate(zip(model.model.layers, calls, strict=True)):
            assert np.array_equal(bits(hidden), bits(expected[index])), index
            args, kwargs = layer_calls[0]  # one length, no padding: every window's arguments are the first's
            hidden = layer(hidden, *args, **kwargs)
