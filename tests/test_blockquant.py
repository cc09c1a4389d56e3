"""quantize --method mxfp4|nvfp4: the export holds round-to-nearest block tensors, the torch and simulator paths
agree bit for bit, and the commands around it (eval, simulate, cosim) handle block layers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import LAYER_LINEARS
from transformers import AutoTokenizer, LlamaForCausalLM

from fp4sim.cli import main
from fp4sim.codec import decode
from fp4sim.codec.blockscaled import (
    MX_SCALE_RULES,
    block_dequantize,
    block_quantize,
    get_block_format,
    nvfp4_tensor_scale,
)
from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.models.perplexity import tokenize_text
from fp4sim.quant.blockquant import (
    BlockLinearQuant,
    block_lsb,
    decode_scales,
    fake_quantize_blocks,
    fake_quantize_blocks_ops,
    float32_rows,
    float64_product,
    fold_block_linear,
    forward_simulator,
    forward_torch,
    weight_operand,
)
from fp4sim.quant.calibrate import model_calibration_windows
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import METADATA_FILE, TENSORS_FILE, ExportError, load_export
from fp4sim.quant.export.store import sha256
from fp4sim.quant.modules import BlockQuantizedLinear
from fp4sim.quant.quantize import quantize_checkpoint

TEXT = DEFAULT_MODEL.parent / "shakespeare" / "valid.txt"
CALIB = TEXT.read_text(encoding="utf-8")[:20000]
FAST = {"calib_samples": 2, "calib_length": 32}


BLOCK_EXPORTS = {  # (method, scale rule, NVFP4 16 x 16 weight tiles); the last takes both NVFP4 options (spec 7.3)
    "mxfp4": ("mxfp4", None, False),
    "nvfp4": ("nvfp4", None, False),
    "nvfp4-4over6-2d": ("nvfp4", "4over6", True),
}


@pytest.fixture(scope="module", params=list(BLOCK_EXPORTS))
def block_export(request, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    method, rule, block_2d = BLOCK_EXPORTS[request.param]
    out = tmp_path_factory.mktemp(request.param) / "q"
    config = QuantConfig(method=method, scale_rule=rule, block_2d=block_2d, **FAST)
    quantize_checkpoint(checkpoint, CALIB, config, out, progress=False)
    return method, out


def linear_names(model: LlamaForCausalLM) -> list[str]:
    layers = range(model.config.num_hidden_layers)
    return [f"model.layers.{i}.{name}" for i in layers for name in LAYER_LINEARS] + ["lm_head"]


def test_block_methods_take_four_bit_settings_only() -> None:
    with pytest.raises(ValueError, match="4-bit format"):
        QuantConfig(method="nvfp4", bits="4/4/8")
    with pytest.raises(ValueError, match="not the attention"):
        QuantConfig(method="mxfp4", quantize_attention=True)
    assert QuantConfig(method="mxfp4", bits="4/4/16").is_block and not QuantConfig().is_block


def test_export_holds_round_to_nearest_block_tensors(block_export, checkpoint: Path) -> None:
    method, out = block_export
    original = LlamaForCausalLM.from_pretrained(checkpoint).eval()
    model, _, metadata = load_export(out)
    config = metadata["quant_config"]
    assert config["method"] == method
    rule, block_2d = config["scale_rule"], config["block_2d"]
    for name in linear_names(original):
        layer = model.get_submodule(name)
        entry = metadata["modules"][name]
        assert isinstance(layer, BlockQuantizedLinear) and entry["kind"] == "block_linear"
        weight = original.get_submodule(name).weight.detach().float().numpy()
        expected = block_quantize(weight, method, scale_rule=rule, block_2d=block_2d)
        np.testing.assert_array_equal(layer.layer.weight.codes, expected.codes)
        np.testing.assert_array_equal(layer.layer.weight.scales, expected.scales)
        assert layer.layer.weight.tensor_scale == expected.tensor_scale
        assert layer.layer.input_scale_rule == entry["input_scale_rule"] == entry["weight_scale_rule"]
        assert entry["weight_scale_rule"] == (rule or {"mxfp4": "floor", "nvfp4": "static_6"}[method])
        assert entry["weight_block_2d"] is block_2d
    table = block_quantize(original.model.embed_tokens.weight.detach().numpy(), method, scale_rule=rule)
    assert torch.equal(model.model.embed_tokens.weight, torch.from_numpy(block_dequantize(table)))


def test_nvfp4_activation_tensor_scale_comes_from_the_calibration_amax(checkpoint: Path, tmp_path: Path) -> None:
    config = QuantConfig(method="nvfp4", **FAST)
    out = quantize_checkpoint(checkpoint, CALIB, config, tmp_path / "q", progress=False)
    original = LlamaForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    windows = model_calibration_windows(64, tokenize_text(tokenizer, CALIB), config)
    peak = {}

    def record(_module: torch.nn.Module, args: tuple) -> None:
        peak["x"] = args[0].abs().max()

    handle = original.model.layers[1].mlp.down_proj.register_forward_pre_hook(record)
    with torch.no_grad():
        original(windows, use_cache=False)
    handle.remove()
    model, _, _ = load_export(out)
    assert model.model.layers[1].mlp.down_proj.layer.input_tensor_scale == nvfp4_tensor_scale(float(peak["x"]))


def test_torch_and_simulator_logits_are_bit_identical(block_export) -> None:
    _, out = block_export
    model, _, _ = load_export(out)
    ids = torch.randint(0, 4096, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch_logits = model(ids).logits
        model.apply(lambda m: m.set_backend("simulator") if isinstance(m, BlockQuantizedLinear) else None)
        simulated = model(ids).logits
    assert torch.equal(torch_logits.view(torch.int32), simulated.view(torch.int32))


@pytest.mark.parametrize("method", ["mxfp4", "nvfp4"])
def test_layer_paths_agree_on_outliers_and_approximate_the_float_layer(method: str) -> None:
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(24, 80, generator=generator)
    x = torch.randn(3, 7, 80, generator=generator)
    x[..., 5] *= 300  # an outlier channel: its blocks get their own scales
    quant = BlockLinearQuant(block_quantize(np.zeros(1, np.float32), method).fmt, True)
    if method == "nvfp4":
        quant = BlockLinearQuant(quant.fmt, True, float(nvfp4_tensor_scale(float(x.abs().max()))))
    layer = fold_block_linear(weight, quant, bias=torch.randn(24, generator=generator))
    torch_path = forward_torch(layer, x, weight_operand(layer))
    assert torch.equal(torch_path.view(torch.int32), forward_simulator(layer, x).view(torch.int32))
    reference = torch.nn.functional.linear(x, weight, layer.bias)
    assert float((torch_path - reference).norm() / reference.norm()) < 0.2  # FP4 noise, not a wrong layer


def edge_rows(generator: torch.Generator) -> torch.Tensor:
    """Rows of 70 values (a short last block) over FP32's range: zeros of both signs, E2M1's rounding ties and
    saturation at one block scale, subnormal inputs and scales, and values near FP32's largest."""
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, 7.0, -0.25, -2.5, 0.0, -0.0, 8.0])
    rows = [ties.repeat(5) * 2.0**e for e in (-140, -130, -127, -126, -100, -9, 0, 3, 60, 100, 120)]
    for e in range(-149, 128, 3):
        rows.append(torch.randn(70, generator=generator) * 2.0**e)
        rows.append(torch.where(torch.rand(70, generator=generator) < 0.5, rows[-1], torch.zeros(())))
    x = torch.stack(rows)
    return torch.where(torch.isfinite(x), x, torch.full_like(x, 3.0e38))


@pytest.mark.parametrize("method", ["mxfp4", "nvfp4"])
def test_torch_ops_block_quantizer_equals_the_codec_bit_for_bit(method: str) -> None:
    fmt = get_block_format(method)
    generator = torch.Generator().manual_seed(5)
    x = edge_rows(generator)
    compared = 0
    for row in x:  # NVFP4 takes a tensor scale per call: one row at a time, scales around and off its amax
        row = row[None]
        amax = float(row.abs().max())
        for factor in (1.0, 0.001, 37.0) if fmt.tensor_scale else (1.0,):
            scale = np.float32(1)
            if fmt.tensor_scale and amax > 0:
                scale = np.float32(max(amax / 2688 * factor, 2.0**-140))  # down to FP32's subnormals
            codec = block_quantize(row.numpy(), fmt, tensor_scale=scale if fmt.tensor_scale else None)
            expected = block_dequantize(codec, include_tensor_scale=False)
            for quantize in (fake_quantize_blocks, fake_quantize_blocks_ops):  # NVFP4: fused kernel, torch ops
                values, scales = quantize(row, fmt, scale)
                assert np.array_equal(values.numpy().view(np.uint32), expected.view(np.uint32)), (row, scale)
                assert np.array_equal(scales.numpy().view(np.uint32), decode_scales(codec).view(np.uint32))
                compared += 1
    assert compared >= 2 * len(x)
    for quantize in (fake_quantize_blocks, fake_quantize_blocks_ops):
        with pytest.raises(ValueError, match="non-finite"):
            quantize(torch.tensor([[1.0, float("nan")]]), fmt, np.float32(1))


@pytest.mark.parametrize("method", ["mxfp4", "nvfp4"])
def test_block_lsb_divides_every_value_and_grows_with_the_scale(method: str) -> None:
    """Over every finite scale code: each ``value(q) * S`` is a multiple of block_lsb(S), and block_lsb never
    shrinks as S grows (float32_rows takes a row's finest LSB from its smallest nonzero scale)."""
    fmt = get_block_format(method)
    codes = np.arange(256, dtype=np.uint8)
    scales = torch.from_numpy(decode(codes, fmt.scale).astype(np.float32))
    scales = scales[torch.isfinite(scales) & (scales >= 0)].unique()  # sorted ascending
    lsb = block_lsb(fmt, scales)
    assert torch.isinf(lsb[scales == 0]).all() and torch.isfinite(lsb[scales > 0]).all()
    positive = lsb[scales > 0]
    assert bool((positive[1:] >= positive[:-1]).all())
    elements = torch.from_numpy(decode(np.arange(16, dtype=np.uint8), fmt.element).astype(np.float64))
    for scale, step in zip(scales[scales > 0].double(), lsb[scales > 0], strict=True):
        multiples = elements * scale / step
        assert torch.equal(multiples, multiples.round()), (scale, step)


@pytest.mark.parametrize("method", ["mxfp4", "nvfp4"])
def test_layer_paths_agree_where_the_float32_bound_holds_and_where_it_does_not(method: str) -> None:
    """Rows with narrow block scales take the float32 product, rows whose scales spread over 2^16 float64
    (a whole call either way, or split by row); every case gives the simulator's bits."""
    fmt = get_block_format(method)
    generator = torch.Generator().manual_seed(6)
    weight = torch.randn(16, 96, generator=generator)
    narrow = torch.randn(5, 96, generator=generator).clamp(-2, 2)
    wide = narrow * torch.exp2(torch.tensor([-8.0, 0.0, 8.0]).repeat_interleave(32))  # one scale per block
    mixed = torch.cat([narrow[:2], wide[:2], torch.zeros(1, 96), -torch.zeros(1, 96)])
    seen = set()
    for x in (narrow, wide, mixed):
        scale = float(nvfp4_tensor_scale(float(x.abs().max()))) if fmt.tensor_scale else 1.0
        layer = fold_block_linear(weight, BlockLinearQuant(fmt, True, scale))
        operand = weight_operand(layer)
        _, scales = fake_quantize_blocks(x, fmt, layer.input_tensor_scale)
        float32 = float32_rows(fmt, scales, operand.grid)
        seen.add((bool(float32.any()), bool(float32.all())))
        torch_path = forward_torch(layer, x, operand)
        assert torch.equal(torch_path.view(torch.int32), forward_simulator(layer, x).view(torch.int32))
    assert seen == {(True, True), (False, False), (True, False)}


def test_an_underflowing_sum_keeps_its_sign_in_a_split_call() -> None:
    """MXFP4 rows whose products fall below FP32's subnormals take float64 beside rows that take float32; a
    negative sum that rounds to zero is -0 there, as block_gemm's one rounding gives (spec 7.5), and a zero
    sum is +0."""
    fmt = get_block_format("mxfp4")
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(8, 64, generator=generator) * 2.0**-100
    tiny = torch.randn(3, 64, generator=generator).abs() * 2.0**-126  # scales clamp at 2^-127: products ~2^-226
    tiny[0, :32] *= -1
    tiny[1] *= -1
    x = torch.cat([torch.randn(2, 64, generator=generator), tiny, torch.zeros(1, 64)])
    layer = fold_block_linear(weight, BlockLinearQuant(fmt, True, 1.0))
    operand = weight_operand(layer)
    _, scales = fake_quantize_blocks(x, fmt, layer.input_tensor_scale)
    assert float32_rows(fmt, scales, operand.grid).tolist() == [True, True, False, False, False, False]
    torch_path, simulator = forward_torch(layer, x, operand), forward_simulator(layer, x)
    assert torch.equal(torch_path.view(torch.int32), simulator.view(torch.int32))
    assert bool((simulator[2:5] == 0).all()) and bool(torch.signbit(simulator[2:5]).any())
    assert not bool(torch.signbit(simulator[5]).any())


@pytest.mark.parametrize("tile", [(3, 5), (1, 1), (4096, 4096)])
def test_float64_product_tiles_give_the_exact_sums_rounded_once(tile: tuple[int, int], monkeypatch) -> None:
    """Tile edges that split rows and outputs unevenly (7 x 13 outputs), one tile per output, and one tile for
    all: each output is its exact sum (fractions) rounded once to float32, +0 for a zero sum, -0 for a negative
    sum below FP32's smallest subnormal. The operands are integers times powers of two whose sums need at most
    44 bits, so float64 is exact in any order."""
    monkeypatch.setattr("fp4sim.quant.blockquant.FLOAT64_TILE", tile)
    generator = torch.Generator().manual_seed(9)
    a = torch.randint(-(2**11), 2**11, (7, 40), generator=generator) * torch.exp2(
        torch.randint(-8, 9, (7, 40), generator=generator).float()
    )
    w = torch.randint(-(2**11), 2**11, (13, 40), generator=generator) * 2.0**-5
    a[3] = 0.0
    w[5] = -0.0
    a[6] = 2.0**-149 * torch.sign(torch.randn(40, generator=generator))  # FP32 subnormals
    a[6, :20] = -(2.0**-149) * torch.sign(w[4, :20])  # output (6, 4): a negative sum ...
    w[4] = w[4] * 2.0**-15  # ... below 2^-150, which rounds to -0
    exact = [[sum(Fraction(float(x)) * Fraction(float(y)) for x, y in zip(r, c, strict=True)) for c in w] for r in a]
    reference = np.array([[np.float32(float(s)) if s else np.float32(0.0) for s in row] for row in exact])
    got = float64_product(a, w).numpy()
    assert np.array_equal(got.view(np.int32), reference.view(np.int32))
    assert exact[6][4] < 0 and got[6, 4] == 0 and bool(np.signbit(got[6, 4]))


def test_weight_only_layers_run_on_torch_and_refuse_the_simulator(checkpoint: Path, tmp_path: Path) -> None:
    out = quantize_checkpoint(checkpoint, CALIB, QuantConfig(method="nvfp4", bits="4/4/16", **FAST), tmp_path / "q")
    model, _, metadata = load_export(out)
    assert metadata["modules"]["lm_head"]["input_format"] is None
    original = LlamaForCausalLM.from_pretrained(checkpoint).eval()
    x = torch.randn(5, 32)
    layer = model.model.layers[0].self_attn.q_proj
    expected = torch.from_numpy(
        block_dequantize(block_quantize(original.model.layers[0].self_attn.q_proj.weight.detach().numpy(), "nvfp4"))
    )
    assert torch.equal(layer(x), torch.nn.functional.linear(x, expected))
    with pytest.raises(ValueError, match="weight-only"):
        layer.set_backend("simulator")


def test_simulate_and_cosim_commands_on_a_block_export(block_export, tmp_path: Path, capsys) -> None:
    _, out = block_export
    argv = ["simulate", "--quantized", str(out), "--text", str(TEXT), "--tokens", "300", "--context", "64"]
    assert main([*argv, "--accum", "exact,aligned_truncate:35", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["simulator"][0]["all_layers_bit_identical"]
    assert "15 of 15" in capsys.readouterr().out
    cosim = ["cosim", "--quantized", str(out), "--text", str(TEXT)]
    layer = [*cosim, "--layer", "model.layers.0.mlp.up_proj"]
    for accum in ("exact,fp32_sequential", "aligned_truncate:35:40", "aligned_truncate:49"):  # refused before any run
        assert main([*layer, "--accum", accum]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "rtl/fp4_block_array.sv) runs exact or aligned_truncate:N[:G]" in err
        assert err.endswith(f"got {accum.split(',')[-1]!r}")
    assert main([*cosim, "--layer", "model.layers.0.mlp"]) == 2
    assert "not a quantized linear layer of this export; choose one of model.layers.0" in capsys.readouterr().err
    assert main([*cosim, "--forward", "--tokens", "4", "--accum", "exact,aligned_truncate:35"]) == 2
    assert "--forward runs one accumulation model" in capsys.readouterr().err


def broken_copy(out: Path, target: Path, tensors_edit: Callable | None, metadata_edit: Callable | None) -> Path:
    """A copy of the export with its tensors and/or metadata edited, checksum recomputed."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(out, target)
    if tensors_edit is not None:
        tensors = load_file(target / TENSORS_FILE)
        tensors_edit(tensors)
        save_file(tensors, target / TENSORS_FILE)
    metadata = json.loads((target / METADATA_FILE).read_text())
    metadata["tensors_sha256"] = sha256(target / TENSORS_FILE)
    if metadata_edit is not None:
        metadata_edit(metadata)
    (target / METADATA_FILE).write_text(json.dumps(metadata))
    return target


def test_corrupt_block_exports_are_refused(block_export, tmp_path: Path) -> None:
    method, out = block_export
    layer = "model.layers.0.mlp.up_proj"
    other_format = "mxfp4" if method == "nvfp4" else "nvfp4"

    def put(key: str, value: Callable) -> Callable:
        return lambda tensors: tensors.__setitem__(key, value(tensors[key]))

    cases = [
        (put(f"{layer}.weight_block_scales", lambda t: t[:, :1].float()), None, "expected torch.uint8"),
        (put(f"{layer}.input_tensor_scale", lambda t: torch.tensor(-1.0)), None, "finite float32 > 0"),
        (put("model.embed_tokens.weight_tensor_scale", lambda t: torch.tensor(float("inf"))), None, "tensor_scale"),
        (None, lambda m: m.update(version=1), "no kind that version 1 knows"),
        (None, lambda m: m.update(version=True), "version True"),
        (None, lambda m: m.pop("modules"), "lists no modules"),
        (None, lambda m: m["modules"][layer].update(weight_format={"name": method}), "bad block format"),
        (None, lambda m: m["modules"][layer].pop("input_format"), "lacks 'input_format'"),
        (
            None,
            lambda m: m["modules"][layer].update(input_format=other_format),
            "cannot meet",
        ),
    ]
    foreign_rule = "4over6" if method == "mxfp4" else "rceil"  # a rule of the other format
    cases.append((None, lambda m: m["modules"][layer].update(input_scale_rule=foreign_rule), "rule; "))
    if method == "mxfp4":  # MXFP4 has no tensor scale: the torch path would multiply by one the simulator ignores
        cases.append((put(f"{layer}.input_tensor_scale", lambda t: torch.tensor(2.0)), None, "must be 1"))
    for i, (tensors_edit, metadata_edit, message) in enumerate(cases):
        broken = broken_copy(out, tmp_path / str(i), tensors_edit, metadata_edit)
        with pytest.raises(ExportError, match=message):
            load_export(broken)


def test_cli_quantize_with_a_block_method(checkpoint: Path, tmp_path: Path, capsys) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text(CALIB)
    argv = ["quantize", "--model", str(checkpoint), "--calib", str(calib), "--out", str(tmp_path / "q")]
    assert main([*argv, "--method", "mxfp4", "--calib-samples", "2", "--calib-length", "32"]) == 0
    assert "(mxfp4 4/4/4)" in capsys.readouterr().out
    short = tmp_path / "short.txt"
    short.write_text(CALIB[:2000])
    assert main(["eval", "--quantized", str(tmp_path / "q"), "--text", str(short)]) == 0
    assert "perplexity" in capsys.readouterr().out


# ---- the other scale rules (spec 7.2, 7.3) and NVFP4's 16 x 16 weight tiles: layers, both paths, the export

RULE_CASES = [("mxfp4", rule, False) for rule in MX_SCALE_RULES[1:]] + [
    ("nvfp4", "4over6", False),
    ("nvfp4", None, True),
    ("nvfp4", "4over6", True),
]


@pytest.mark.parametrize(("method", "rule", "block_2d"), RULE_CASES)
def test_scale_rules_reach_both_layer_paths(method: str, rule: str | None, block_2d: bool) -> None:
    """The weight and the run-time activations follow the rule (the weight its tiles); the torch path equals the
    codec and the simulator."""
    fmt = get_block_format(method)
    generator = torch.Generator().manual_seed(7)
    x = edge_rows(generator)
    for row in x if fmt.tensor_scale else x[None]:  # NVFP4: a tensor scale per row, from its own amax
        row = row.reshape(-1, x.shape[1])
        tensor_range = 1536 if rule == "4over6" else 2688  # NVFP4: amax to 6 * 256 or 6 * 448, down to 2^-140
        scale = np.float32(max(float(row.abs().max()) / tensor_range, 2.0**-140) if fmt.tensor_scale else 1)
        values, scales = fake_quantize_blocks(row, fmt, scale, rule)
        codec = block_quantize(row.numpy(), fmt, tensor_scale=scale if fmt.tensor_scale else None, scale_rule=rule)
        expected = block_dequantize(codec, include_tensor_scale=False)
        assert np.array_equal(values.numpy().view(np.uint32), expected.view(np.uint32))
        assert np.array_equal(scales.numpy(), decode_scales(codec))
    weight = torch.randn(24, 80, generator=generator)
    inputs = torch.randn(3, 7, 80, generator=generator) * 3.5
    inputs[..., 5] *= 300  # an outlier channel
    scale = float(nvfp4_tensor_scale(float(inputs.abs().max()), rule)) if fmt.tensor_scale else 1.0
    layer = fold_block_linear(weight, BlockLinearQuant(fmt, True, scale, scale_rule=rule, block_2d=block_2d))
    expected = block_quantize(weight.numpy(), fmt, scale_rule=rule, block_2d=block_2d)
    assert np.array_equal(layer.weight.codes, expected.codes) and np.array_equal(layer.weight.scales, expected.scales)
    assert layer.input_scale_rule == (rule or "static_6")
    torch_path = forward_torch(layer, inputs, weight_operand(layer))
    assert torch.equal(torch_path.view(torch.int32), forward_simulator(layer, inputs).view(torch.int32))
    default_scale = float(nvfp4_tensor_scale(float(inputs.abs().max()))) if fmt.tensor_scale else 1.0
    default = fold_block_linear(weight, BlockLinearQuant(fmt, True, default_scale))
    assert not torch.equal(torch_path, forward_torch(default, inputs, weight_operand(default)))  # the rule acts


def test_exports_from_before_the_nvfp4_rules_still_load(block_export, tmp_path: Path) -> None:
    """Until the NVFP4 rules, every block layer recorded input_scale_rule "floor" (weight-only and NVFP4 layers too)
    and quant_config.scale_rule "floor" for every method: NVFP4 layers read it as their default, static_6."""
    method, out = block_export

    def old(metadata: dict) -> None:
        metadata["quant_config"]["scale_rule"] = "floor"
        metadata["quant_config"].pop("block_2d")
        for entry in metadata["modules"].values():
            if entry["kind"] == "block_linear":
                entry["input_scale_rule"] = "floor"
                del entry["weight_scale_rule"], entry["weight_block_2d"]

    model, _, _ = load_export(broken_copy(out, tmp_path / "old", None, old))
    layer = model.get_submodule("model.layers.0.mlp.up_proj").layer
    assert layer.input_scale_rule == {"mxfp4": "floor", "nvfp4": "static_6"}[method]


def test_cli_quantize_with_a_scale_rule_exports_and_reloads_it(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rceil"
    args = ["quantize", "--model", str(checkpoint), "--calib", str(TEXT), "--out", str(out), "--method", "mxfp4"]
    assert main([*args, "--scale-rule", "rceil", "--calib-length", "32"]) == 0
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["quant_config"]["scale_rule"] == "rceil"
    assert {entry["input_scale_rule"] for entry in metadata["modules"].values() if "input_scale_rule" in entry} == {
        "rceil"
    }
    model, _, _ = load_export(out)
    layer = model.get_submodule("model.layers.0.mlp.up_proj").layer
    original = LlamaForCausalLM.from_pretrained(checkpoint).get_submodule("model.layers.0.mlp.up_proj").weight
    assert layer.input_scale_rule == "rceil"
    assert np.array_equal(
        layer.weight.scales, block_quantize(original.detach().numpy(), "mxfp4", scale_rule="rceil").scales
    )
    capsys.readouterr()
    assert main([*args[:-2], "--method", "nvfp4", "--scale-rule", "rceil", "--overwrite"]) == 2
    assert "MXFP4 rule" in capsys.readouterr().err
    assert main([*args, "--block-2d", "--overwrite"]) == 2
    assert "block_2d (16 x 16 weight tiles) is an NVFP4 option" in capsys.readouterr().err
    nvfp4 = [*args[:-2], "--method", "nvfp4", "--scale-rule", "4over6", "--calib-length", "32", "--overwrite"]
    assert main([*nvfp4, "--export-format", "compressed-tensors"]) == 2
    assert "no 4over6 activation scheme" in capsys.readouterr().err
    assert main([*nvfp4, "--block-2d"]) == 0
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert (metadata["quant_config"]["scale_rule"], metadata["quant_config"]["block_2d"]) == ("4over6", True)
    layer = load_export(out)[0].get_submodule("model.layers.0.mlp.up_proj").layer
    expected = block_quantize(original.detach().numpy(), "nvfp4", scale_rule="4over6", block_2d=True)
    assert np.array_equal(layer.weight.scales, expected.scales) and layer.input_scale_rule == "4over6"
    assert layer.weight.tensor_scale == nvfp4_tensor_scale(float(original.detach().abs().max()), "4over6")
