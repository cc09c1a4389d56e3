"""fp4sim simulate: the per-layer comparison counts what it says, exact mode agrees with the torch path everywhere
(spec 6.2) with the same perplexity, a coarse accumulator does not, and the command writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fp4sim.cli import main
from fp4sim.e2e.simulate import LayerAgreement, perplexity_measure, simulate_model
from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.models.perplexity import perplexity
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.quantize import quantize_checkpoint

TEXT = DEFAULT_MODEL.parent / "shakespeare" / "valid.txt"


@pytest.fixture(scope="module")
def export(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = QuantConfig(method="fpq", grid_points=5, rounds=1, calib_samples=2, calib_length=32)
    out = tmp_path_factory.mktemp("sim") / "q"
    return quantize_checkpoint(checkpoint, TEXT.read_text()[:20000], config, out, progress=False)


def test_layer_agreement_counts_bits_not_values() -> None:
    agreement = LayerAgreement("x")
    reference = torch.tensor([1.0, 0.0, -2.0, 4.0])
    agreement.update(torch.tensor([1.0, -0.0, -2.5, 4.0]), reference)  # -0 == +0 as values, not as bits
    assert (agreement.outputs, agreement.identical) == (4, 2)
    assert agreement.max_abs == 0.5 and agreement.max_rel == 0.25
    assert agreement.fraction == 0.5


def test_exact_mode_is_the_torch_path_and_coarse_accumulation_is_not(export: Path) -> None:
    model, _, _ = load_export(export)
    ids = torch.randint(0, 4096, (300,), generator=torch.Generator().manual_seed(0))
    torch_ppl = perplexity(model, ids, context=64, progress=False).perplexity
    measure = perplexity_measure(ids, context=64, progress=False)
    exact = simulate_model(model, "exact", measure)
    assert exact.all_identical and len(exact.layers) == 7 * 2 + 1
    assert all(layer.outputs > 0 and layer.max_abs == 0 for layer in exact.layers)
    assert exact.scores == {"perplexity": torch_ppl}
    coarse = simulate_model(model, "aligned_truncate:2", measure)
    assert not coarse.all_identical and coarse.scores["perplexity"] != torch_ppl
    assert all(layer.backend == "torch" for layer in model.modules() if hasattr(layer, "backend"))  # restored


def test_cli_simulate_writes_the_report(export: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    argv = ["simulate", "--quantized", str(export), "--text", str(TEXT), "--tokens", "400", "--context", "64"]
    assert main([*argv, "--accum", "exact,fp32_sequential", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["perplexity"]["fp32"] is not None  # the export's source checkpoint is found
    assert [run["accum"] for run in report["simulator"]] == ["exact", "fp32_sequential"]
    assert report["simulator"][0]["all_layers_bit_identical"]
    assert report["simulator"][0]["perplexity"] == report["perplexity"]["torch"]
    assert (out / "layer_error.png").read_bytes()[:4] == b"\x89PNG"
    assert "every output of every layer is bit-identical" in (out / "report.md").read_text()
    assert "15 of 15" in capsys.readouterr().out


def test_cosim_refuses_unknown_layers_and_impossible_tile_counts(export: Path) -> None:
    from fp4sim.e2e.cosim import run_cosim

    model, _, _ = load_export(export)
    ids = torch.arange(64)
    with pytest.raises(ValueError, match="not a quantized linear layer"):
        run_cosim(model, "model.layers.0.mlp", ids)
    with pytest.raises(ValueError, match=r"tiles must be 1\.\.192"):
        run_cosim(model, "model.layers.0.mlp.up_proj", ids, tiles=1000)  # 64 tokens x 48 outputs: 16 x 12 tiles
    with pytest.raises(ValueError, match=r"LLM-FP4 layer: rtl/fp4_array\.sv accumulates exactly"):
        run_cosim(model, "model.layers.0.mlp.up_proj", ids, accum="aligned_truncate:35")


def test_cli_simulate_reads_a_text_for_a_decoder(export: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "d.tsv"
    data.write_text("a text\t0\n")
    assert main(["simulate", "--quantized", str(export), "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    assert "simulated on a text" in capsys.readouterr().err and not (tmp_path / "r").exists()
