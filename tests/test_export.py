"""Hardware export: the folded form computes what the unfolded fake quantization does (bit for bit where the maths
says so), the torch and simulator paths agree bit for bit, exports round-trip, and bad input fails cleanly."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

import fp4sim
from fp4sim import get_format
from fp4sim.cli import main
from fp4sim.models.checkpoint import DEFAULT_MODEL, load_model, load_pretrained
from fp4sim.quant.calibrate import calibrate_model, calibration_windows
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import (
    EXPORT_VERSION,
    METADATA_FILE,
    TENSORS_FILE,
    ExportError,
    export_quantized,
    load_export,
    read_metadata,
)
from fp4sim.quant.folded import FoldedLinear, exact_sum_dtype, fold_linear, forward_simulator, input_values
from fp4sim.quant.modules import FakeQuantLinear, QuantizedLinear
from fp4sim.quant.quantize import quantize_checkpoint
from fp4sim.quant.search import LinearQuant, TensorQuant

FAST = {"grid_points": 5, "rounds": 1, "calib_samples": 2, "calib_length": 32}
CALIB_TEXT = (DEFAULT_MODEL.parent / "shakespeare" / "valid.txt").read_text(encoding="utf-8")[:20000]


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().view(np.uint32)


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, LlamaForCausalLM]:
    """fpq 4/4/4 export of the checkpoint, with the calibration result and the model it came from."""
    model = LlamaForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    config = QuantConfig(method="fpq", **FAST)
    ids = torch.tensor(tokenizer(CALIB_TEXT)["input_ids"])
    params = calibrate_model(model, calibration_windows(ids, 2, 32, seed=0), config, progress=False)
    out = tmp_path_factory.mktemp("export") / "q"
    export_quantized(model, tokenizer, params, config, out, source=str(checkpoint))
    return out, params, model


def _layer(seed: int, k: int, n: int, fmt_a: str, fmt_w: str, power_of_two: bool) -> tuple[torch.Tensor, LinearQuant]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator)
    fa, fw = get_format(fmt_a), get_format(fmt_w)
    if power_of_two:
        w_scale = torch.exp2(torch.randint(-4, 0, (n,), generator=generator).float())
        a_scale = torch.tensor(0.25)
    else:
        w_scale = torch.rand(n, generator=generator) * 0.5 + 0.1
        a_scale = torch.tensor(0.37)
    shift = torch.randint(0, 2**fa.ebits, (k,), generator=generator)
    return weight, LinearQuant(TensorQuant(fw, w_scale), TensorQuant(fa, a_scale, shift))


@pytest.mark.parametrize(("fmt_a", "fmt_w"), [("E2M1", "E2M1"), ("E1M2", "E3M0"), ("E3M0", "E2M1")])
def test_folded_weights_and_inputs_are_the_fake_quantized_ones(fmt_a: str, fmt_w: str) -> None:
    """decode(codes) * alpha_W is the fake-quantized weight; value(A) 2^-s * alpha_X the fake-quantized input."""
    weight, quant = _layer(0, 48, 40, fmt_a, fmt_w, power_of_two=False)
    folded = fold_linear(weight, quant)
    dequantized = fp4sim.decode(folded.weight_codes, folded.weight_format, scale=folded.weight_scale, axis=0)
    assert np.array_equal(bits(dequantized), bits(quant.weight.apply(weight, channel_axis=0)))
    x = torch.randn(16, 48) * 3
    assert np.array_equal(bits(input_values(folded, x) * folded.input_scale), bits(quant.activation.apply(x)))


@pytest.mark.parametrize(("fmt_a", "fmt_w"), [("E2M1", "E2M1"), ("E1M2", "E2M1"), ("E2M1", "E3M0")])
def test_fold_equals_unfold_bit_for_bit_with_power_of_two_scales(fmt_a: str, fmt_w: str) -> None:
    """With power-of-two scales every dequantized value and partial sum is exact: both forms give the same bits."""
    weight, quant = _layer(1, 64, 24, fmt_a, fmt_w, power_of_two=True)
    x = torch.randn(32, 64) * 2
    unfolded = FakeQuantLinear(torch.nn.Linear(64, 24, bias=False), quant)
    unfolded.weight.data = quant.weight.apply(weight, channel_axis=0)
    folded = QuantizedLinear(fold_linear(weight, quant))
    with torch.no_grad():
        assert np.array_equal(bits(folded(x)), bits(unfolded(x)))


def test_fold_equals_unfold_in_exact_arithmetic() -> None:
    """With real scales the two forms differ only by float rounding: sum_j x^_j w^_jk (each dequantized value rounded
    to FP32, as the unfolded form holds them) is within FP32 rounding of alpha_X alpha_W sum_j A_j 2^-s_j W_jk."""
    weight, quant = _layer(2, 32, 8, "E2M1", "E2M1", power_of_two=False)
    folded = fold_linear(weight, quant)
    x = torch.randn(4, 32)
    xq, wq = quant.activation.apply(x), quant.weight.apply(weight, channel_axis=0)
    values = input_values(folded, x)
    w_values = torch.from_numpy(folded.weight_format.values().astype(np.float32))[folded.weight_codes.long()]
    for i in range(4):
        for k in range(8):
            unfolded = sum(Fraction(float(xq[i, j])) * Fraction(float(wq[k, j])) for j in range(32))
            exact = Fraction(float(quant.activation.scale)) * Fraction(float(quant.weight.scale[k]))
            exact *= sum(Fraction(float(values[i, j])) * Fraction(float(w_values[k, j])) for j in range(32))
            scale_of_terms = sum(abs(Fraction(float(xq[i, j])) * Fraction(float(wq[k, j]))) for j in range(32))
            assert abs(unfolded - exact) <= scale_of_terms * Fraction(2, 2**24)


@pytest.mark.parametrize(("fmt_a", "fmt_w", "k"), [("E2M1", "E2M1", 300), ("E3M0", "E3M0", 688), ("E3M0", "E1M2", 40)])
def test_torch_path_is_the_simulators_bits(fmt_a: str, fmt_w: str, k: int) -> None:
    """The folded torch path and fp4sim.gemm give identical bits in exact mode (float32 or float64 sums, spec 4.2)."""
    weight, quant = _layer(3, k, 24, fmt_a, fmt_w, power_of_two=False)
    weight[0] = weight[0].abs()
    layer = QuantizedLinear(fold_linear(weight, quant))
    x = torch.randn(2, 5, k) * 4
    x[0, 0] = -1e-30  # -0 codes times positive weights: a sum of -0 products is +0 in the array (spec 2.4)
    with torch.no_grad():
        on_torch = layer(x)
        layer.set_backend("simulator")
        on_simulator = layer(x)
    assert np.array_equal(bits(on_torch), bits(on_simulator))
    expected_dtype = torch.float64 if (fmt_a, fmt_w) == ("E3M0", "E3M0") else torch.float32
    folded = layer.folded
    assert (
        exact_sum_dtype(folded.input_format, folded.weight_format, int(folded.input_shift.max()), k) == expected_dtype
    )


def test_simulator_study_models_run_on_folded_layers() -> None:
    weight, quant = _layer(4, 64, 16, "E2M1", "E2M1", power_of_two=False)
    folded = fold_linear(weight, quant)
    x = torch.randn(8, 64)
    exact = forward_simulator(folded, x, "exact")
    coarse = forward_simulator(folded, x, "aligned_truncate:3")
    assert exact.shape == coarse.shape == (8, 16) and not torch.equal(exact, coarse)


def test_export_round_trip(exported: tuple[Path, dict, LlamaForCausalLM]) -> None:
    out, params, model = exported
    loaded, tokenizer, metadata = load_export(out)
    assert metadata["version"] == EXPORT_VERSION and metadata["quant_config"]["method"] == "fpq"
    assert set(metadata["modules"]) == set(params)
    for name, quant in params.items():
        if isinstance(quant, TensorQuant):
            continue
        original = fold_linear(model.get_submodule(name).weight, quant)
        layer = loaded.get_submodule(name)
        assert isinstance(layer, QuantizedLinear)
        for field in ("weight_codes", "weight_scale", "input_scale", "input_shift"):
            assert torch.equal(getattr(layer.folded, field), getattr(original, field)), (name, field)
        assert layer.folded.weight_format == quant.weight.fmt and layer.folded.input_format == quant.activation.fmt
    embedding = params["model.embed_tokens"].apply(model.model.embed_tokens.weight.detach(), channel_axis=0)
    assert np.array_equal(bits(loaded.model.embed_tokens.weight), bits(embedding))
    assert not torch.equal(loaded.lm_head.weight_values, loaded.model.embed_tokens.weight)  # untied on export
    assert torch.equal(loaded.model.norm.weight, model.model.norm.weight)
    assert tokenizer("To be")["input_ids"] == AutoTokenizer.from_pretrained(DEFAULT_MODEL)("To be")["input_ids"]


def test_tied_embeddings_export_as_two_quantized_tensors(exported: tuple[Path, dict, LlamaForCausalLM]) -> None:
    """The source ties lm_head to the embedding; the export quantizes each its own way (the table per row, lm_head as a
    linear layer with its input's scale and shifts) and the loaded model's logits are the quantized lm_head's output."""
    from safetensors.torch import load_file

    out, params, model = exported
    assert model.lm_head.weight is model.model.embed_tokens.weight
    stored = load_file(out / TENSORS_FILE)
    assert {"model.embed_tokens.weight_codes", "lm_head.weight_codes", "lm_head.input_shift"} <= stored.keys()
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    loaded, _, _ = load_export(out)
    assert isinstance(loaded.lm_head, QuantizedLinear) and loaded.get_output_embeddings() is loaded.lm_head
    assert torch.equal(
        loaded.lm_head.folded.weight_codes, fold_linear(model.lm_head.weight, params["lm_head"]).weight_codes
    )
    seen = {}
    handle = loaded.lm_head.register_forward_hook(lambda _, args, output: seen.update(hidden=args[0], logits=output))
    with torch.no_grad():
        logits = loaded(torch.tensor([[1, 2, 3, 4, 5]])).logits
        handle.remove()
        assert np.array_equal(bits(logits), bits(seen["logits"]))
        assert not torch.equal(logits, seen["hidden"] @ loaded.model.embed_tokens.weight.T)


def test_loaded_model_runs_the_same_bits_on_torch_and_simulator(exported: tuple[Path, dict, LlamaForCausalLM]) -> None:
    out, _, _ = exported
    on_torch, _, _ = load_export(out, backend="torch")
    on_simulator, _, _ = load_export(out, backend="simulator")
    ids = torch.randint(0, 4096, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert np.array_equal(bits(on_torch(ids).logits), bits(on_simulator(ids).logits))


def test_packing_pads_odd_input_widths(tmp_path: Path) -> None:
    from fp4sim.quant.export.schema import pack_codes, unpack_codes

    codes = torch.randint(0, 16, (3, 7), dtype=torch.uint8)
    packed = pack_codes(codes, get_format("E2M1"))
    assert packed.shape == (3, 4)
    assert torch.equal(unpack_codes(packed, get_format("E2M1"), (3, 7), "x"), codes)


def test_foreign_corrupt_and_newer_exports_are_refused(exported: tuple[Path, dict, LlamaForCausalLM], tmp_path: Path):
    out, _, _ = exported
    with pytest.raises(ExportError, match="not a directory"):
        load_export(tmp_path / "missing")
    with pytest.raises(ExportError, match="not an fp4sim export"):
        load_export(DEFAULT_MODEL)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(out, corrupt)
    data = bytearray((corrupt / TENSORS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (corrupt / TENSORS_FILE).write_bytes(bytes(data))
    with pytest.raises(ExportError, match="checksum"):
        load_export(corrupt)
    newer = tmp_path / "newer"
    shutil.copytree(out, newer)
    metadata = json.loads((newer / METADATA_FILE).read_text())
    (newer / METADATA_FILE).write_text(json.dumps({**metadata, "version": EXPORT_VERSION + 1}))
    with pytest.raises(ExportError, match=f"version {EXPORT_VERSION + 1}"):
        read_metadata(newer)
    (newer / METADATA_FILE).write_text(json.dumps({**metadata, "version": 1}))  # LLM-FP4 layout is unchanged since 1
    assert read_metadata(newer)["version"] == 1
    (newer / METADATA_FILE).write_text("{not json")
    with pytest.raises(ExportError, match="corrupt"):
        read_metadata(newer)


def test_a_failed_export_leaves_nothing(exported: tuple[Path, dict, LlamaForCausalLM], tmp_path: Path) -> None:
    _, params, model = exported

    class BrokenTokenizer:
        def save_pretrained(self, path: Path) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        export_quantized(model, BrokenTokenizer(), params, QuantConfig(**FAST), tmp_path / "q")
    assert list(tmp_path.iterdir()) == []


def test_existing_targets_are_kept_unless_overwrite(exported: tuple[Path, dict, LlamaForCausalLM], tmp_path: Path):
    out, params, model = exported
    tokenizer = AutoTokenizer.from_pretrained(out)
    target = tmp_path / "q"
    shutil.copytree(out, target)
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_quantized(model, tokenizer, params, QuantConfig(**FAST), target)
    export_quantized(model, tokenizer, params, QuantConfig(**FAST), target, overwrite=True)
    assert read_metadata(target)["quant_config"]["grid_points"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]  # no staging or old copies left behind
    precious = tmp_path / "precious"
    precious.mkdir()
    with pytest.raises(FileExistsError, match="not an fp4sim export"):
        export_quantized(model, tokenizer, params, QuantConfig(**FAST), precious, overwrite=True)


@pytest.mark.parametrize(("method", "bits_setting"), [("fpq", "4/4/16"), ("fpq", "8/8/8"), ("minmax", "8/8/8")])
def test_quantize_checkpoint_other_bit_settings(checkpoint: Path, tmp_path: Path, method: str, bits_setting: str):
    """Weight-only (4/4/16) exports run on torch only: the MAC array needs quantized activations. 8-bit formats of the
    family (MinMax: E4M3 x E4M3) run on the simulator too, sized to the layer, with the torch path's bits."""
    config = QuantConfig(method=method, bits=bits_setting, **FAST)
    out = quantize_checkpoint(checkpoint, CALIB_TEXT, config, tmp_path / "q", progress=False)
    model, _, metadata = load_export(out)
    q_proj = metadata["modules"]["model.layers.0.self_attn.q_proj"]
    assert (q_proj["input_format"] is None) == (bits_setting == "4/4/16")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    if bits_setting == "4/4/16":
        with pytest.raises(ValueError, match="MAC array needs quantized activations"):
            load_export(out, backend="simulator")
        return
    on_simulator, _, _ = load_export(out, backend="simulator")
    with torch.no_grad():
        assert np.array_equal(bits(model(ids).logits), bits(on_simulator(ids).logits))


def test_cli_quantize_and_eval(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text(CALIB_TEXT)
    out = tmp_path / "q"
    args = ["quantize", "--model", str(checkpoint), "--calib", str(calib), "--out", str(out), "--method", "minmax"]
    assert main([*args, "--calib-length", "32", "--calib-samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| forward passes |" in printed and "peak resident memory" in printed  # where the time went
    assert main(["eval", "--quantized", str(out), "--text", str(calib)]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["eval", "--quantized", str(out), "--text", str(calib), "--tokens", "300", "--context", "64"]) == 0
    assert "over 299 tokens" in capsys.readouterr().out  # the first token has no context
    assert main([*args, "--calib-length", "32"]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--model": "missing-dir"}, "not a directory"),
        ({"--calib": "missing.txt"}, "does not exist"),
        ({"--calib": "short.txt"}, "calibration text has"),
        ({"--model": "foreign"}, "LLaMA-shaped decoders"),
    ],
)
def test_cli_quantize_bad_input_writes_nothing(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, message: str
) -> None:
    (tmp_path / "short.txt").write_text("To be, or not to be")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    options = {"--model": str(checkpoint), "--calib": str(tmp_path / "calib.txt"), "--out": str(tmp_path / "q")}
    (tmp_path / "calib.txt").write_text(CALIB_TEXT)
    options.update({k: str(tmp_path / v) for k, v in change.items()})
    argv = ["quantize", *[item for pair in options.items() for item in pair], "--calib-length", "32"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_cli_refuses_unsupported_bit_settings(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", "--calib", "x", "--out", "y", "--bits", "4/4/5"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_folded_layer_rejects_shifts_beyond_the_port(exported: tuple[Path, dict, LlamaForCausalLM], tmp_path: Path):
    out, _, _ = exported
    from safetensors.torch import load_file, save_file

    from fp4sim.quant.export.store import sha256

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    tensors = load_file(broken / TENSORS_FILE)
    tensors["model.layers.0.self_attn.q_proj.input_shift"][0] = 9
    save_file(tensors, broken / TENSORS_FILE)
    metadata = json.loads((broken / METADATA_FILE).read_text())
    metadata["tensors_sha256"] = sha256(broken / TENSORS_FILE)
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ExportError, match="input_shift exceeds"):
        load_export(broken)


def test_folded_linear_properties() -> None:
    weight, quant = _layer(6, 16, 4, "E2M1", "E2M1", power_of_two=False)
    folded: FoldedLinear = fold_linear(weight, quant)
    assert (folded.in_features, folded.out_features) == (16, 4)
    assert torch.equal(folded.output_scale, quant.activation.scale * quant.weight.scale)
    assert (
        folded.pe_config().k_max == 16
        and folded.pe_config().shift_bits == int(quant.activation.shift.max()).bit_length()
    )


def test_a_disk_offloaded_model_exports_the_same_bits(checkpoint: Path, tmp_path: Path) -> None:
    """accelerate's offload (every layer on disk here) changes where weights live, not what the export holds."""
    from safetensors.torch import load_file

    config = QuantConfig(method="fpq", **FAST)
    in_memory = quantize_checkpoint(checkpoint, CALIB_TEXT, config, tmp_path / "memory", progress=False)
    offloaded = quantize_checkpoint(
        checkpoint,
        CALIB_TEXT,
        config,
        tmp_path / "disk",
        device_map={"": "disk"},
        offload_folder=tmp_path / "offload",
        progress=False,
    )
    model, _ = load_pretrained(checkpoint, device_map={"": "disk"}, offload_folder=tmp_path / "offload")
    assert model.model.layers[0].self_attn.q_proj.weight.is_meta  # the weights really live on disk
    expected, got = load_file(in_memory / TENSORS_FILE), load_file(offloaded / TENSORS_FILE)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)


def test_layers_too_wide_for_the_golden_accumulator_run_on_torch_only() -> None:
    """E5M2 x E5M2 with shifts up to 31 needs a Kulisch accumulator past 64 bits: torch runs it (float64), the
    simulator refuses it with the reason."""
    weight, quant = _layer(7, 32, 8, "E5M2", "E5M2", power_of_two=False)
    layer = QuantizedLinear(fold_linear(weight, quant))
    with torch.no_grad():
        assert torch.isfinite(layer(torch.randn(3, 32))).all()
    with pytest.raises(ValueError, match="64"):
        layer.set_backend("simulator")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints_quantize_and_run(checkpoint: Path, tmp_path: Path, dtype: str) -> None:
    """A checkpoint loaded in bf16 / fp16 calibrates (in float32) and its export runs in that dtype on both paths."""
    out = quantize_checkpoint(checkpoint, CALIB_TEXT, QuantConfig(**FAST), tmp_path / "q", dtype=dtype, progress=False)
    on_torch, _, _ = load_export(out, dtype=dtype)
    on_simulator, _, _ = load_export(out, dtype=dtype, backend="simulator")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        logits = on_torch(ids).logits
        assert logits.dtype == getattr(torch, dtype) and torch.isfinite(logits).all()
        assert torch.equal(logits, on_simulator(ids).logits)


def test_loading_off_the_cpu_turns_tf32_off(checkpoint: Path) -> None:
    """An FP32 reference or calibration computed in TF32 is not FP32: the loader turns it off on any device but
    the CPU (the meta device stands in for a GPU here)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
        load_model(checkpoint, device="cpu")
        assert torch.get_float32_matmul_precision() == "high"  # the CPU has no TF32: the user's setting stays
        load_model(checkpoint, device="meta")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
