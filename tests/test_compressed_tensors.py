"""compressed-tensors checkpoints (docs/spec.md 7.8): fp4sim's export read back by the library, the library's own
checkpoints run on fp4sim's simulator bit for bit, the global-scale convention against a Fraction reference."""

from __future__ import annotations

import json
import shutil
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

from fp4sim.cli import main
from fp4sim.codec import decode
from fp4sim.codec.blockscaled import ELEMENT, block_dequantize, block_quantize
from fp4sim.e2e.simulate import perplexity_measure, simulate_model
from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.models.perplexity import tokenize_text
from fp4sim.quant.compressed.check import check_checkpoint, swizzle, unswizzle
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


EXPORTS = {  # directory name: QuantConfig settings. The last: NVFP4's 4over6 and 16 x 16 tiles (spec 7.3), W4A16
    "nvfp4": {"method": "nvfp4"},
    "mxfp4": {"method": "mxfp4"},
    "nvfp4-4over6-2d": {"method": "nvfp4", "scale_rule": "4over6", "block_2d": True, "bits": "4/4/16"},
}


@pytest.fixture(scope="module", params=list(EXPORTS))
def exported(request: pytest.FixtureRequest, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ct") / request.param
    config = QuantConfig(**EXPORTS[request.param], calib_samples=2, calib_length=32)
    return quantize_checkpoint(source, TEXT, config, out, progress=False, export_format="compressed-tensors")


def _method(path: Path) -> str:
    return EXPORTS[path.name]["method"]


def _fp4sim_weight(path: Path, weight: torch.Tensor):
    """fp4sim's block tensor of `weight` under the export's settings."""
    settings = EXPORTS[path.name]
    return block_quantize(
        weight.detach(),
        settings["method"],
        scale_rule=settings.get("scale_rule"),
        block_2d=settings.get("block_2d", False),
    )


def _weight_only(path: Path) -> bool:
    return EXPORTS[path.name].get("bits") == "4/4/16"


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
        fp4sim_weight = _fp4sim_weight(exported, original.get_submodule(name).weight)
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
    if _weight_only(exported):
        assert scheme.input_activations is None
    else:
        assert scheme.input_activations.dynamic == ("local" if nvfp4 else True)
    stored = load_file(exported / "model.safetensors")
    key = "model.layers.0.mlp.down_proj"
    assert (f"{key}.input_global_scale" in stored) == (nvfp4 and not _weight_only(exported))
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
    expected = _fp4sim_weight(exported, original.get_submodule("model.layers.1.self_attn.o_proj").weight)
    np.testing.assert_array_equal(layer.layer.weight.codes, expected.codes)
    np.testing.assert_array_equal(layer.layer.weight.scales, expected.scales)
    assert layer.layer.weight.tensor_scale == np.float32(1) / (np.float32(1) / expected.tensor_scale)
    ids = tokenize_text(tokenizer, TEXT)[:48]
    if _weight_only(exported):  # W4A16 runs on torch only: the layer is its dequantized weight
        x = torch.randn(3, layer.layer.in_features)
        weight = block_dequantize(layer.layer.weight)
        assert torch.equal(layer(x), torch.nn.functional.linear(x, torch.from_numpy(weight)))
    else:
        assert simulate_model(model, "exact", perplexity_measure(ids, context=24, progress=False)).all_identical


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
        assert simulate_model(model, "exact", perplexity_measure(ids, context=24, progress=False)).all_identical


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


# ---- fp4sim check: a clean checkpoint passes, each fault on a checkpoint damaged on purpose is caught


LAYER = "model.layers.0.self_attn.q_proj"  # 32 x 32: two NVFP4 blocks per row, one MXFP4 block


def _damaged(exported: Path, tmp_path: Path, edit) -> Path:
    """A copy of `exported` whose tensors (and config.json dict) `edit(tensors, config)` changed in place."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "damaged"
    shutil.copytree(exported, out)
    tensors = load_file(out / "model.safetensors")
    config = json.loads((out / "config.json").read_text())
    edit(tensors, config)
    save_file(tensors, out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(config))
    return out


def _rules(path: Path, capsys: pytest.CaptureFixture) -> tuple[int, set[tuple[str, str]], str]:
    """(exit status of fp4sim check, {(severity, rule)} found, the printed report)."""
    status = main(["check", str(path)])
    report = check_checkpoint(path)
    return status, {(f.severity, f.rule) for _, f in report.all_findings()}, capsys.readouterr().out


def test_check_passes_a_clean_checkpoint(exported: Path, capsys: pytest.CaptureFixture) -> None:
    status, rules, out = _rules(exported, capsys)
    assert (status, rules) == (0, set())
    assert f"| {LAYER} | {_method(exported)} | 32 x 32 | linear |" in out
    assert "15 quantized tensors, 0 errors, 0 warnings" in out


def _set_scale(tensors: dict, code: int, name: str = LAYER) -> None:
    scales = tensors[f"{name}.weight_scale"]
    codes = scales.view(torch.uint8).clone()
    codes[3, 0] = code
    tensors[f"{name}.weight_scale"] = codes.view(scales.dtype)


def _multiplier(tensors: dict, config: dict) -> None:
    tensors[f"{LAYER}.weight_global_scale"] = 1 / tensors[f"{LAYER}.weight_global_scale"]


def _swizzled(tensors: dict, config: dict) -> None:
    scales = tensors[f"{LAYER}.weight_scale"]
    tensors[f"{LAYER}.weight_scale"] = torch.from_numpy(swizzle(scales.view(torch.uint8).numpy())).view(scales.dtype)


def _zero_block(tensors: dict, config: dict) -> None:
    tensors[f"{LAYER}.weight_packed"][5, :16] = 0  # the first 32 elements of row 5: whole blocks in either format


def _ragged(tensors: dict, config: dict) -> None:
    tensors[f"{LAYER}.weight_packed"] = tensors[f"{LAYER}.weight_packed"][:, :12].contiguous()  # 24 inputs


def _tied(tensors: dict, config: dict) -> None:
    """Tied in config.json, but the stored lm_head has one block scale one code away from the table's."""
    config["tie_word_embeddings"] = True
    _set_scale(tensors, int(tensors["lm_head.weight_scale"].view(torch.uint8)[3, 0]) + 1, "lm_head")


FAULTS = {
    "multiplier-global-scale": (_multiplier, ("error", "global-scale"), ("nvfp4",)),
    "swizzled": (_swizzled, ("error", "layout"), ("nvfp4", "mxfp4")),
    "sign-bit": (lambda t, c: _set_scale(t, 0xB8), ("error", "scale-sign"), ("nvfp4",)),
    "nan-e4m3": (lambda t, c: _set_scale(t, 0x7F), ("error", "scale-nan"), ("nvfp4",)),
    "nan-e8m0": (lambda t, c: _set_scale(t, 0xFF), ("error", "scale-nan"), ("mxfp4",)),
    "zero-block": (_zero_block, ("warning", "zero-block-scale"), ("nvfp4", "mxfp4")),
    "ragged": (_ragged, ("error", "shape"), ("nvfp4", "mxfp4")),
    "tied": (_tied, ("error", "tied-embeddings"), ("nvfp4", "mxfp4")),
}


FAULT_CASES = [(fault, method) for fault, (_, _, methods) in FAULTS.items() for method in methods]


@pytest.mark.parametrize(
    ("fault", "exported"), FAULT_CASES, indirect=["exported"], ids=[f"{f}-{m}" for f, m in FAULT_CASES]
)
def test_check_catches_each_fault(fault: str, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    edit, expected, _ = FAULTS[fault]
    status, rules, out = _rules(_damaged(exported, tmp_path, edit), capsys)
    assert rules == {expected}
    assert status == (1 if expected[0] == "error" else 0)
    assert f"[{expected[1]}]" in out


def test_swizzle_is_the_tiled_layout_and_unswizzle_inverts_it() -> None:
    """Row r, column c of a 128 x 4 tile lands at (r % 32, 4 * (r // 32) + c) of its 32 x 16 block (cuBLAS)."""
    scales = np.arange(200 * 6, dtype=np.int32).reshape(200, 6)
    stored = swizzle(scales)
    assert stored.shape == (256, 8)
    tile = stored.reshape(-1)[:512].reshape(32, 16)
    for r, c in [(0, 0), (31, 3), (32, 0), (127, 2), (100, 1)]:
        assert tile[r % 32, 4 * (r // 32) + c] == scales[r, c]
    np.testing.assert_array_equal(unswizzle(stored, scales.shape), scales)


# ---- the commands, and what is refused


def test_cli_simulate_and_eval_read_a_compressed_tensors_checkpoint(
    exported: Path, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "valid.txt"
    text.write_text(TEXT)
    report = tmp_path / "sim"
    common = ["--quantized", str(exported), "--text", str(text), "--tokens", "40", "--context", "20"]
    if _weight_only(exported):  # W4A16: the simulator needs FP4 activations
        assert main(["simulate", *common, "--model", str(source), "--out", str(report)]) == 2
        assert "weight-only layers keep floating-point activations" in capsys.readouterr().err
    else:
        assert main(["simulate", *common, "--model", str(source), "--out", str(report)]) == 0
        assert "15 of 15" in capsys.readouterr().out
        written = json.loads((report / "report.json").read_text())
        assert written["simulator"][0]["all_layers_bit_identical"]
        assert written["perplexity"]["fp32"] is not None  # from --model
    assert main(["eval", *common]) == 0
    assert "perplexity" in capsys.readouterr().out


def _edit_scheme(exported: Path, tmp_path: Path, **weights: object) -> Path:
    def edit(tensors: dict, config: dict) -> None:
        for group in config["quantization_config"]["config_groups"].values():
            group["weights"].update(weights)

    return _damaged(exported, tmp_path, edit)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"type": "int"}, "4-bit int"), ({"group_size": 128}, "group 128"), ({"symmetric": False}, "asymmetric")],
)
def test_schemes_fp4sim_cannot_simulate_are_refused(
    change: dict, message: str, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    damaged = _edit_scheme(exported, tmp_path, **change)
    with pytest.raises(CompressedTensorsError, match=message):
        load_export(damaged)
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert main(["eval", "--quantized", str(damaged), "--text", str(text)]) == 2
    assert message in capsys.readouterr().err


def test_compressed_tensors_export_takes_block_methods_only(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="takes --method mxfp4 or nvfp4"):
        quantize_checkpoint(
            source, TEXT, QuantConfig(method="minmax"), tmp_path / "q", export_format="compressed-tensors"
        )
    assert not (tmp_path / "q").exists()


# ---- ModelOpt NVFP4: the same codes, per-tensor scales stored as multipliers


def _modelopt_from(library: Path, out: Path) -> Path:
    """ModelOpt's layout of a compressed-tensors NVFP4 checkpoint: ``weight`` for ``weight_packed``, the
    multipliers ``weight_scale_2`` and ``input_scale`` for the divisors (float32 reciprocals), hf_quant_config.json."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(library, out)
    renamed = {}
    for key, value in load_file(library / "model.safetensors").items():
        name, _, field = key.rpartition(".")
        if field == "weight_packed":
            renamed[f"{name}.weight"] = value
        elif field in ("weight_global_scale", "input_global_scale"):
            multiplier = (np.float32(1) / value.numpy()).astype(np.float32)
            renamed[f"{name}.{'weight_scale_2' if field.startswith('weight') else 'input_scale'}"] = torch.from_numpy(
                multiplier
            )
        else:
            renamed[key] = value
    save_file(renamed, out / "model.safetensors")
    config = json.loads((out / "config.json").read_text())
    del config["quantization_config"]
    (out / "config.json").write_text(json.dumps(config))
    quant = {"quant_algo": "NVFP4", "group_size": 16, "kv_cache_quant_algo": None, "exclude_modules": ["lm_head"]}
    (out / "hf_quant_config.json").write_text(json.dumps({"producer": {"name": "modelopt"}, "quantization": quant}))
    return out


def test_a_modelopt_checkpoint_takes_its_multipliers_as_they_are(source: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = tokenize_text(tokenizer, TEXT)[:48]
    library = library_checkpoint(
        AutoModelForCausalLM.from_pretrained(source), tokenizer, "NVFP4", ids[None, :24], tmp_path / "ct"
    )
    out = _modelopt_from(library, tmp_path / "modelopt")
    stored = load_file(out / "model.safetensors")
    model, _, metadata = load_export(out)
    assert metadata["format"] == "modelopt"
    name = "model.layers.1.mlp.down_proj"
    layer = model.get_submodule(name).layer
    codes = layer.weight.codes
    np.testing.assert_array_equal(codes[:, 0::2] | codes[:, 1::2] << 4, stored[f"{name}.weight"].numpy())
    assert layer.weight.tensor_scale == stored[f"{name}.weight_scale_2"].numpy()[0]  # no rounding: a multiplier
    assert layer.input_tensor_scale == stored[f"{name}.input_scale"].numpy()[0]
    assert simulate_model(model, "exact", perplexity_measure(ids, context=24, progress=False)).all_identical


def _reciprocal(field: str):
    """An edit storing every `field` as its float32 reciprocal: a compressed-tensors divisor where ModelOpt's
    multiplier belongs."""

    def edit(tensors: dict, config: dict) -> None:
        for key in [k for k in tensors if k.endswith(f".{field}")]:
            tensors[key] = torch.from_numpy((np.float32(1) / tensors[key].numpy()).astype(np.float32))

    return edit


MODELOPT_FAULTS = {  # edit, findings, a phrase the report must print
    "clean": (lambda t, c: None, set(), "15 quantized tensors, 0 errors, 0 warnings"),
    "divisor-weight-scale": (
        _reciprocal("weight_scale_2"),
        {("error", "global-scale")},
        "read as the multiplier ModelOpt defines",
    ),
    "divisor-input-scale": (_reciprocal("input_scale"), {("warning", "global-scale")}, "input_scale = "),
    "sign-bit": (lambda t, c: _set_scale(t, 0xB8), {("error", "scale-sign")}, "[scale-sign]"),
    "swizzled": (_swizzled, {("error", "layout")}, "| swizzled |"),
}


@pytest.mark.parametrize("exported", ["nvfp4"], indirect=True)
@pytest.mark.parametrize("fault", list(MODELOPT_FAULTS))
def test_check_reads_modelopt_scales_as_multipliers(
    fault: str, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """ModelOpt's layout of the same checkpoint: the same amax under its multipliers as under compressed-tensors'
    divisors, and each fault caught under ModelOpt's field names."""
    edit, expected, phrase = MODELOPT_FAULTS[fault]
    modelopt = _damaged(_modelopt_from(exported, tmp_path / "modelopt"), tmp_path, edit)
    status, rules, out = _rules(modelopt, capsys)
    assert rules == expected
    assert status == (1 if any(severity == "error" for severity, _ in expected) else 0)
    assert phrase in out
    if fault == "clean":
        assert f"| {LAYER} | nvfp4 | 32 x 32 | linear |" in out
        as_compressed = {t.name: t for t in check_checkpoint(exported).tensors}
        as_modelopt = {t.name: t for t in check_checkpoint(modelopt).tensors}
        assert sorted(as_modelopt) == sorted(as_compressed)
        for name, t in as_modelopt.items():  # the producer's own reading: the same weights, to g's float32 rounding
            assert t.amax_multiplier == pytest.approx(as_compressed[name].amax_divisor, rel=2**-20)


def test_other_modelopt_algorithms_are_refused(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "fp8"
    shutil.copytree(source, out)
    (out / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "FP8"}}))
    with pytest.raises(CompressedTensorsError, match="quant_algo 'FP8'"):
        load_export(out)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (torch.nn.Conv2d(3, 32, 2), "Conv2d; compressed-tensors stores quantized linear layers only"),
        (torch.nn.Linear(24, 8), "24 input channels are not a multiple of nvfp4's block of 16"),
    ],
)
def test_layers_compressed_tensors_cannot_hold_are_refused(module: torch.nn.Module, message: str, tmp_path: Path):
    from fp4sim.codec.blockscaled import NVFP4
    from fp4sim.quant.blockquant import BlockLinearQuant
    from fp4sim.quant.compressed.write import export_compressed_tensors

    model = torch.nn.Sequential(module)
    with pytest.raises(CompressedTensorsError, match=message):
        export_compressed_tensors(
            model, None, {"0": BlockLinearQuant(NVFP4, False)}, QuantConfig(method="nvfp4"), tmp_path / "q"
        )
    assert not (tmp_path / "q").exists()
