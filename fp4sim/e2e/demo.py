"""The main job on the bundled model: quantize with LLM-FP4, stream through the simulator, run RTL tiles.

``fp4sim demo`` (``make demo``): fpq 4/4/4 with the paper's search settings,
the export run on the simulator in exact mode with every layer checked
against the torch path, perplexity of FP32 / torch / simulator on the
validation text, and two tiles of a real layer through the Verilog array.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..models.checkpoint import DEFAULT_CORPUS, DEFAULT_MODEL, load_pretrained
from ..models.perplexity import perplexity, tokenize_text
from ..quant.config import QuantConfig
from ..quant.export import load_export
from ..quant.quantize import quantize_checkpoint
from . import COSIM_TILES, DEMO_DIR
from .cosim import run_cosim
from .simulate import SimulationReport, perplexity_measure, simulate_model, write_report

COSIM_LAYER = "model.layers.1.mlp.down_proj"  # widest K in the model (688), FPQ's shifts in use


def run_demo(out: str | Path = DEMO_DIR, *, tiles: int = COSIM_TILES, overwrite: bool = False) -> int:
    """Run the main job, writing the export and the report under `out`; 0 when every check passes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = QuantConfig()  # fpq 4/4/4, default settings (docs/quantization.md)
    print(f"[1/4] quantizing {DEFAULT_MODEL.name} with LLM-FP4 ({config.method} {config.bits}, default settings)")
    calib = (DEFAULT_CORPUS / "train.txt").read_text(encoding="utf-8")
    export = quantize_checkpoint(DEFAULT_MODEL, calib, config, out / "export", overwrite=overwrite)
    print(f"[2/4] perplexity of the FP32 model and of the export on torch ({DEFAULT_CORPUS / 'valid.txt'})")
    text = (DEFAULT_CORPUS / "valid.txt").read_text(encoding="utf-8")
    fp32_model, tokenizer = load_pretrained(DEFAULT_MODEL)
    ids = tokenize_text(tokenizer, text)
    fp32 = perplexity(fp32_model, ids).perplexity
    model, _, _ = load_export(export)
    on_torch = perplexity(model, ids)
    print("[3/4] the export on the bit-accurate simulator (exact accumulation), every layer checked against torch")
    run = simulate_model(model, "exact", perplexity_measure(ids))
    valid = str(DEFAULT_CORPUS / "valid.txt")
    scores = {"perplexity": on_torch.perplexity}
    report = SimulationReport(str(export), valid, f"{on_torch.tokens:,} tokens", {"perplexity": fp32}, scores, [run])
    files = write_report(report, out / "report")
    print(f"[4/4] {tiles} tiles of {COSIM_LAYER} through rtl/fp4_array.sv under Icarus Verilog")
    cosim = run_cosim(model, COSIM_LAYER, ids[: model.config.max_position_embeddings], tiles=tiles)
    same_layers = sum(layer.identical == layer.outputs for layer in run.layers)
    outputs = sum(layer.outputs for layer in run.layers)
    print(
        "\n| path | perplexity |\n|---|---|\n"
        f"| FP32 | {fp32:.2f} |\n| LLM-FP4 {config.bits}, torch fake quantization | {on_torch.perplexity:.2f} |\n"
        f"| LLM-FP4 {config.bits}, bit-accurate simulator | {run.scores['perplexity']:.2f} |\n"
    )
    print(
        f"simulator vs torch: {same_layers} of {len(run.layers)} layers bit-identical ({outputs:,} outputs)\n"
        f"RTL vs simulator: {cosim.outputs} outputs of {cosim.tiles} tiles, "
        f"{'all bit-identical' if cosim.passed else f'{cosim.mismatches} MISMATCHES'}\n"
        f"report: {files[0]}; export: {export}; {time.perf_counter() - started:.0f} s"
    )
    return 0 if run.all_identical and cosim.passed else 1
