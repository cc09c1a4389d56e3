"""A quantized model streamed through the bit-accurate simulator, checked layer by layer against the torch path.

Every quantized linear layer of an export runs on ``fp4sim.gemm`` (LLM-FP4)
or ``fp4sim.block_gemm`` (MXFP4 / NVFP4) under an accumulation model; a
forward hook runs the torch path (docs/spec.md 6.2, 7.6) on the same input and
compares the two, bit for bit. In exact mode they must agree everywhere; the
study models (spec 2.6, 7.5) show how far a narrower accumulator moves each layer. End to end, perplexity of the FP32
model, the torch path and the simulator on the same text.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_directory
from ..models.perplexity import perplexity
from ..quant.modules import SimulatedLinear, set_backend

_INT_VIEWS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


@dataclass
class LayerAgreement:
    """How one layer's simulator outputs compare with the torch path's on the same inputs."""

    name: str
    outputs: int = 0
    identical: int = 0  # bit-identical outputs
    max_abs: float = 0.0
    max_rel: float = 0.0  # over outputs whose torch value is nonzero

    @property
    def fraction(self) -> float:
        return self.identical / self.outputs if self.outputs else math.nan

    def update(self, simulated: torch.Tensor, reference: torch.Tensor) -> None:
        view = _INT_VIEWS[simulated.dtype]
        differs = simulated.view(view) != reference.view(view)
        self.outputs += simulated.numel()
        self.identical += simulated.numel() - int(differs.sum())
        if not differs.any():  # the usual case in exact mode: nothing more to measure
            return
        sim, ref = simulated[differs].double(), reference[differs].double()
        diff = (sim - ref).abs()
        self.max_abs = max(self.max_abs, float(diff.max()))
        nonzero = ref != 0
        if nonzero.any():
            self.max_rel = max(self.max_rel, float((diff[nonzero] / ref[nonzero].abs()).max()))


@dataclass
class AgreementMonitor:
    """Forward hooks on every quantized linear: the torch path on the module's input, compared with its output."""

    layers: dict[str, LayerAgreement] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)

    def attach(self, model: Any) -> AgreementMonitor:
        for name, module in model.named_modules():
            if isinstance(module, SimulatedLinear):
                self.layers[name] = LayerAgreement(name)
                self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, name: str) -> Any:
        def compare(module: Any, args: tuple, output: torch.Tensor) -> None:
            reference = module.reference(args[0]).to(output.dtype)
            self.layers[name].update(output.detach(), reference)

        return compare


@dataclass
class SimulationResult:
    accum: str
    perplexity: float
    layers: list[LayerAgreement]

    @property
    def all_identical(self) -> bool:
        return all(layer.identical == layer.outputs for layer in self.layers)


def simulate_model(
    model: Any,
    ids: torch.Tensor,
    accum: str,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> SimulationResult:
    """Perplexity of a loaded export on the simulator under `accum`, with every layer checked against torch."""
    set_backend(model, "simulator", accum)
    monitor = AgreementMonitor().attach(model)
    try:
        result = perplexity(model, ids, context=context, stride=stride, batch_size=batch_size, progress=progress)
    finally:
        monitor.detach()
        set_backend(model, "torch")
    return SimulationResult(accum, result.perplexity, list(monitor.layers.values()))


@dataclass
class SimulationReport:
    export: str
    text: str
    tokens: int
    perplexity_fp32: float | None
    perplexity_torch: float
    runs: list[SimulationResult]

    def to_dict(self) -> dict:
        runs = [
            {
                "accum": run.accum,
                "perplexity": run.perplexity,
                "all_layers_bit_identical": run.all_identical,
                "layers": [{**asdict(layer), "fraction_identical": layer.fraction} for layer in run.layers],
            }
            for run in self.runs
        ]
        return {
            "export": self.export,
            "text": self.text,
            "tokens_scored": self.tokens,
            "perplexity": {"fp32": self.perplexity_fp32, "torch": self.perplexity_torch},
            "simulator": runs,
        }

    def markdown(self) -> str:
        fp32 = f"{self.perplexity_fp32:.4f}" if self.perplexity_fp32 is not None else "n/a"
        lines = [
            f"# fp4sim simulate: {self.export}",
            "",
            f"Text `{self.text}`, {self.tokens:,} tokens scored.",
            "",
            "| path | accumulation | perplexity | layers bit-identical to the torch path |",
            "|---|---|---|---|",
            f"| FP32 (unquantized) | - | {fp32} | - |",
            f"| torch path | exact | {self.perplexity_torch:.4f} | - |",
        ]
        for run in self.runs:
            same = sum(layer.identical == layer.outputs for layer in run.layers)
            lines.append(f"| simulator | {run.accum} | {run.perplexity:.4f} | {same} of {len(run.layers)} |")
        for run in self.runs:
            lines += ["", f"## Per layer, simulator `{run.accum}` vs torch", ""]
            if run.accum == "exact":
                verdict = "every output of every layer is bit-identical (docs/spec.md 6.2, 7.6)"
                lines += [f"Exact mode: {verdict if run.all_identical else 'MISMATCHES: the spec is violated'}.", ""]
            lines += ["| layer | outputs | bit-identical | max abs error | max rel error |", "|---|---|---|---|---|"]
            for layer in run.layers:
                lines.append(
                    f"| {layer.name} | {layer.outputs:,} | {100 * layer.fraction:.4f}% | {layer.max_abs:.3g} "
                    f"| {layer.max_rel:.3g} |"
                )
        return "\n".join(lines) + "\n"


REPORT_FILES = ("report.md", "report.json", "layer_error.png")


def check_report_target(out: str | Path) -> None:
    """FileNotFoundError / FileExistsError unless `out` may hold a report: new, empty, or an earlier report."""
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: {out.parent} is not a directory")
    if out.exists() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise FileExistsError(f"{out} exists and is not an fp4sim report; choose another --out")


def write_report(report: SimulationReport, out: str | Path) -> list[Path]:
    """report.md, report.json and layer_error.png in the directory `out`, which appears whole or not at all.

    An earlier report (or an empty directory) at `out` is replaced; anything else is refused (check_report_target).
    """
    out = Path(out)
    check_report_target(out)
    with atomic_directory(out, replace=True) as staging:
        (staging / REPORT_FILES[0]).write_text(report.markdown())
        (staging / REPORT_FILES[1]).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        plot_layer_error(report.runs, staging / REPORT_FILES[2])
    return [out / name for name in REPORT_FILES]


def plot_layer_error(runs: list[SimulationResult], path: Path) -> None:
    """Per layer: the share of outputs that differ from the torch path, and the max relative error, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [layer.name.removeprefix("model.") for layer in runs[0].layers]
    fig, (differ_ax, rel_ax) = plt.subplots(2, 1, figsize=(max(8, 0.3 * len(names)), 7), sharex=True)
    for run in runs:
        differ = [1 - layer.fraction for layer in run.layers]
        differ_ax.plot(range(len(names)), differ, marker="o", label=run.accum)
        rel_ax.plot(range(len(names)), [max(layer.max_rel, 1e-12) for layer in run.layers], marker="o", label=run.accum)
    differ_ax.set(ylabel="outputs not bit-identical", title="simulator vs torch path, per quantized layer")
    rel_ax.set(ylabel="max relative error (0 drawn at 1e-12)", yscale="log")
    rel_ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    differ_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
