"""LLM-FP4 beside the block formats real accelerators ship: bits per element and perplexity (the README's table).

Quantizes the model with LLM-FP4 (fpq 4/4/4, the paper's defaults), MXFP4 and
NVFP4 (round to nearest; weights and activations, then weights only), and
measures sliding-window perplexity on the torch path, on the simulator in
exact mode, and on the simulator with NVIDIA's FP4 tensor-core accumulation
(aligned_truncate:35, block formats only: the element-wise model is too slow
for a whole split). Bits per weight element count every tensor the export
stores for the quantized layers (codes, block or channel scales, shifts,
tensor scales); activation bits are the format's. The MXFP4 rows under the
other scale rules (spec 7.2) change only how each block's exponent is chosen;
the NVFP4 rows under 4over6 and 16 x 16 weight tiles (spec 7.3) only how each
block's E4M3 scale is (the 16 x 16 scales are stored once per row, as 1 x 16
ones, so the bits do not change).

    python benchmarks/block_formats.py --out docs/results/block_formats
    python benchmarks/block_formats.py --settings MXFP4 "MXFP4, ceil" "MXFP4, even" "MXFP4, rceil" \
        --torch-only --out docs/results/mx_scale_rules
    python benchmarks/block_formats.py --settings NVFP4 "NVFP4, 4over6" "NVFP4, 16x16 weight tiles" \
        "NVFP4, 4over6, 16x16 weight tiles" "NVFP4 weight-only" "NVFP4 weight-only, 4over6" \
        "NVFP4 weight-only, 16x16 weight tiles" --torch-only --out docs/results/nvfp4_scale_rules
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from safetensors import safe_open

from fp4sim.codec.blockscaled import BLOCK_FORMATS
from fp4sim.models.checkpoint import DEFAULT_MODEL, load_pretrained
from fp4sim.models.perplexity import perplexity, tokenize_text
from fp4sim.quant.config import UNQUANTIZED, QuantConfig
from fp4sim.quant.export import TENSORS_FILE, load_export
from fp4sim.quant.modules import set_backend
from fp4sim.quant.quantize import quantize_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {  # label: (method, bits, block scale rule (None: the format's own), NVFP4 16 x 16 weight tiles)
    "LLM-FP4 (FPQ)": ("fpq", "4/4/4", None, False),
    "MXFP4": ("mxfp4", "4/4/4", None, False),
    "NVFP4": ("nvfp4", "4/4/4", None, False),
    "MXFP4 weight-only": ("mxfp4", "4/4/16", None, False),
    "NVFP4 weight-only": ("nvfp4", "4/4/16", None, False),
    "MXFP4, ceil": ("mxfp4", "4/4/4", "ceil", False),
    "MXFP4, even": ("mxfp4", "4/4/4", "even", False),
    "MXFP4, rceil": ("mxfp4", "4/4/4", "rceil", False),
    "NVFP4, 4over6": ("nvfp4", "4/4/4", "4over6", False),
    "NVFP4, 16x16 weight tiles": ("nvfp4", "4/4/4", None, True),
    "NVFP4, 4over6, 16x16 weight tiles": ("nvfp4", "4/4/4", "4over6", True),
    "NVFP4 weight-only, 4over6": ("nvfp4", "4/4/16", "4over6", False),
    "NVFP4 weight-only, 16x16 weight tiles": ("nvfp4", "4/4/16", None, True),
}
NVIDIA_FP4_ACCUM = "aligned_truncate:35"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--calib", default=str(ROOT / "models/shakespeare/train.txt"))
    parser.add_argument("--text", default=str(ROOT / "models/shakespeare/valid.txt"))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default="block_formats", help="writes OUT.md and OUT.json")
    parser.add_argument(
        "--torch-only", action="store_true", help="perplexity on the torch path only (the simulator's is tested equal)"
    )
    args = parser.parse_args()

    model, tokenizer = load_pretrained(args.model)
    ids = tokenize_text(tokenizer, Path(args.text).read_text(encoding="utf-8"))
    rows = [{"setting": "FP32", "weight_bits": 32.0, "activation_bits": 32.0, "torch": _ppl(model, ids)}]
    print(rows[-1], flush=True)
    calib = Path(args.calib).read_text(encoding="utf-8")
    for label in args.settings:
        method, bits, rule, block_2d = SETTINGS[label]
        config = QuantConfig(method=method, bits=bits, scale_rule=rule, block_2d=block_2d)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            export = quantize_checkpoint(args.model, calib, config, Path(tmp) / "export", progress=False)
            row = {"setting": label, "method": method, "bits": bits, "quantize_s": time.perf_counter() - start}
            quantized, _, metadata = load_export(export)
            row["weight_bits"] = stored_bits_per_weight(export, metadata)
            row["activation_bits"] = activation_bits(config)
            row["torch"] = _ppl(quantized, ids)
            if config.activation_bits != 16 and not args.torch_only:
                row["simulator_exact"] = _ppl(set_backend(quantized, "simulator", "exact"), ids)
                if config.is_block:
                    row["simulator_nvidia"] = _ppl(set_backend(quantized, "simulator", NVIDIA_FP4_ACCUM), ids)
        rows.append(row)
        print(row, flush=True)
        write_table(rows, args.out)  # after every row: a long run keeps what it measured
    print(Path(f"{args.out}.md").read_text())


def stored_bits_per_weight(export: Path, metadata: dict) -> float:
    """Bits the export stores for the quantized modules (everything but biases) per weight element."""
    modules = metadata["modules"]
    stored = elements = 0
    with safe_open(export / TENSORS_FILE, framework="pt") as tensors:
        for key in tensors.keys():
            name, _, field = key.rpartition(".")
            if name in modules and field != "bias":
                tensor = tensors.get_tensor(key)
                stored += tensor.numel() * tensor.element_size() * 8
    for entry in modules.values():
        shape = entry.get("shape") or [entry["out_features"], entry["in_features"]]
        elements += shape[0] * shape[1]
    return stored / elements


def activation_bits(config: QuantConfig) -> float:
    """Bits per activation element: the element width plus block scales (a per-tensor FP32 scale is not counted);
    32 where activations stay in the model's float32."""
    if config.activation_bits == UNQUANTIZED:
        return 32.0
    if config.is_block:
        return BLOCK_FORMATS[config.method].bits_per_element
    return float(config.activation_bits)


def _ppl(model: object, ids: object) -> float:
    return perplexity(model, ids, progress=False).perplexity


def write_table(rows: list[dict], out: str) -> None:
    lines = [
        "| setting | E/W/A | weight bits / element | activation bits / element | perplexity (torch) "
        f"| simulator, exact | simulator, {NVIDIA_FP4_ACCUM} |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [f"{row[key]:.4f}" if key in row else "-" for key in ("torch", "simulator_exact", "simulator_nvidia")]
        lines.append(
            f"| {row['setting']} | {row.get('bits', '-')} | {row['weight_bits']:.3f} | {row['activation_bits']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
