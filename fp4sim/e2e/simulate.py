"""A quantized model streamed through the bit-accurate simulator, checked layer by layer against the torch path.

Every quantized linear layer of an export runs on ``fp4sim.gemm`` (LLM-FP4)
or ``fp4sim.block_gemm`` (MXFP4 / NVFP4) under an accumulation model, and so
does every quantized attention matmul; a forward hook runs the torch path
(docs/spec.md 6.2, 6.3, 7.6) on the same operands and compares the two, bit for
bit. In exact mode they must agree everywhere; the study models (spec 2.6, 7.5)
show how far a narrower accumulator moves each layer. End to end, the model's
metric (perplexity for a decoder, an encoder's metric from
models.encoder_eval) for the FP32 model, the torch path and the simulator.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_directory
from ..models.perplexity import perplexity
from ..quant.attention import STATE, FoldedAttention, matmul_torch
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
    """Forward hooks on every quantized linear and attention matmul: the torch path on the same operands, compared
    with the output. An attention's matmuls are the layers ``<attention>.scores`` (Q K^T) and ``<attention>.context``
    (P V); the monitor holds their FoldedAttention's on_matmul while attached."""

    layers: dict[str, LayerAgreement] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)
    attentions: list[FoldedAttention] = field(default_factory=list)

    def attach(self, model: Any) -> AgreementMonitor:
        for name, module in model.named_modules():
            if isinstance(module, SimulatedLinear):
                self.layers[name] = LayerAgreement(name)
                self.handles.append(module.register_forward_hook(self._hook(name)))
            state = getattr(module, STATE, None)
            if isinstance(state, FoldedAttention):
                for which in ("scores", "context"):
                    self.layers[f"{name}.{which}"] = LayerAgreement(f"{name}.{which}")
                state.on_matmul = self._matmul_hook(name)
                self.attentions.append(state)
        return self

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        for state in self.attentions:
            state.on_matmul = None
        self.handles.clear()
        self.attentions.clear()

    def _hook(self, name: str) -> Any:
        def compare(module: Any, args: tuple, output: torch.Tensor) -> None:
            reference = module.reference(args[0]).to(output.dtype)
            self.layers[name].update(output.detach(), reference)

        return compare

    def _matmul_hook(self, name: str) -> Any:
        def compare(which: str, left: torch.Tensor, right: torch.Tensor, quant: Any, output: torch.Tensor) -> Any:
            reference = matmul_torch(left, right, quant).to(output.dtype)
            self.layers[f"{name}.{which}"].update(output.detach(), reference)
            return output

        return compare


Scores = dict[str, float | None]  # a model's metric values by name, e.g. {"perplexity": 62.08}
Measure = Callable[[Any], Scores]  # a model -> its scores on fixed inputs


@dataclass
class SimulationResult:
    accum: str
    scores: Scores
    layers: list[LayerAgreement]

    @property
    def all_identical(self) -> bool:
        return all(layer.identical == layer.outputs for layer in self.layers)


def perplexity_measure(
    ids: torch.Tensor, *, context: int | None = None, stride: int | None = None, batch_size: int = 8, progress=True
) -> Measure:
    """A decoder's sliding-window perplexity on the token ids `ids` (models.perplexity), as a Measure."""

    def measure(model: Any) -> Scores:
        result = perplexity(model, ids, context=context, stride=stride, batch_size=batch_size, progress=progress)
        return {"perplexity": result.perplexity}

    return measure


def simulate_model(model: Any, accum: str, measure: Measure) -> SimulationResult:
    """`measure` of a loaded export on the simulator under `accum`, with every quantized layer and attention matmul
    checked against the torch path; the export is back on torch afterwards."""
    set_backend(model, "simulator", accum)
    monitor = AgreementMonitor().attach(model)
    try:
        scores = measure(model)
    finally:
        monitor.detach()
        set_backend(model, "torch")
    return SimulationResult(accum, scores, list(monitor.layers.values()))


@dataclass
class SimulationReport:
    """One export's scores (FP32 model, torch path, the simulator per accumulation model) on the inputs at `data`
    (`scored` says how many: "95,320 tokens"), with the per-layer comparison of every simulator run."""

    export: str
    data: str
    scored: str
    fp32: Scores | None  # None without the FP32 model
    torch: Scores
    runs: list[SimulationResult]

    def to_dict(self) -> dict:
        runs = [
            {
                "accum": run.accum,
                **run.scores,
                "all_layers_bit_identical": run.all_identical,
                "layers": [{**asdict(layer), "fraction_identical": layer.fraction} for layer in run.layers],
            }
            for run in self.runs
        ]
        scores = {
            name: {"fp32": None if self.fp32 is None else self.fp32[name], "torch": value}
            for name, value in self.torch.items()
        }
        return {"export": self.export, "data": self.data, "scored": self.scored, **scores, "simulator": runs}

    def markdown(self) -> str:
        names = list(self.torch)
        lines = [
            f"# fp4sim simulate: {self.export}",
            "",
            f"`{self.data}`, {self.scored} scored.",
            "",
            f"| path | accumulation | {' | '.join(name.replace('_', ' ') for name in names)} "
            "| layers bit-identical to the torch path |",
            "|---|---|" + "---|" * len(names) + "---|",
            f"| FP32 (unquantized) | - | {_cells(self.fp32, names)} | - |",
            f"| torch path | exact | {_cells(self.torch, names)} | - |",
        ]
        for run in self.runs:
            same = sum(layer.identical == layer.outputs for layer in run.layers)
            lines.append(f"| simulator | {run.accum} | {_cells(run.scores, names)} | {same} of {len(run.layers)} |")
        for run in self.runs:
            lines += ["", f"## Per layer, simulator `{run.accum}` vs torch", ""]
            if run.accum == "exact":
                verdict = "every output of every layer is bit-identical (docs/spec.md 6.2, 6.3, 7.6)"
                lines += [f"Exact mode: {verdict if run.all_identical else 'MISMATCHES: the spec is violated'}.", ""]
            lines += ["| layer | outputs | bit-identical | max abs error | max rel error |", "|---|---|---|---|---|"]
            for layer in run.layers:
                lines.append(
                    f"| {layer.name} | {layer.outputs:,} | {100 * layer.fraction:.4f}% | {layer.max_abs:.3g} "
                    f"| {layer.max_rel:.3g} |"
                )
        return "\n".join(lines) + "\n"


def _cells(scores: Scores | None, names: list[str]) -> str:
    values = [None if scores is None else scores.get(name) for name in names]
    return " | ".join("n/a" if value is None else f"{value:.6g}" for value in values)


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
