"""A whole forward pass with every quantized linear layer computed by the Verilog array, through the bulk player.

Each QuantizedLinear's input is encoded as spec 6.1 says, scheduled as spec
3.4 says (output tiles row-major, the layer's full K per tile, back to back
behind one reset) and played through ``tb/fp4_array_player.sv`` in one run
(:mod:`fp4sim.rtlsim.player`). The pulses are reassembled into the array's
FP32 result, which must equal ``fp4sim.gemm`` bit for bit; the epilogue of
spec 2.5 (per-channel scale, then bias) gives the layer's output, which must
equal the torch path's on the same input bit for bit, and it replaces that
output in the forward, so every later layer sees what the RTL computed.

Every layer runs on one array build per format pair: K_MAX is the array's
default, enough for any layer here, and the exact accumulator gives the same
bits for any K_MAX >= K (spec 2.3). Needs the source tree and the simulator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..gemm import gemm
from ..hw.fp4_array import collect_tiles, schedule_gemm, stitch_streams
from ..hw.fp4_pkg import K_MAX_DEFAULT, PEConfig
from ..hw.fp4_round_to_float import FP32
from ..quant.attention import STATE
from ..quant.folded import FoldedLinear, input_codes, weight_codes_kn
from ..quant.modules import BlockQuantizedLinear, QuantizedLinear
from ..rtlsim.player import play_stream
from ..rtlsim.runner import array_parameters, check_tools


@dataclass
class LayerRun:
    """One quantized linear layer of the forward, computed by the array."""

    layer: str
    shape: tuple[int, int, int]  # (M, K, N): tokens, in_features, out_features
    cycles: int  # array edges played
    seconds: float  # simulator wall time
    array_mismatches: int  # array outputs (FP32, before the epilogue) that differ from fp4sim.gemm
    torch_mismatches: int  # layer outputs that differ from the torch path on the same input

    @property
    def identical(self) -> bool:
        return self.array_mismatches == 0 and self.torch_mismatches == 0


@dataclass
class ForwardRun:
    """The forward on the RTL against the torch path: per layer, and at the logits."""

    layers: list[LayerRun] = field(default_factory=list)
    logits_mismatches: int = -1  # logits that differ from the torch-path forward's
    logits_count: int = 0
    perplexity_rtl: float = float("nan")
    perplexity_torch: float = float("nan")
    wall_seconds: float = 0.0  # the whole RTL forward: encoding, files, simulation, checks

    @property
    def cycles(self) -> int:
        return sum(run.cycles for run in self.layers)

    @property
    def simulation_seconds(self) -> float:
        return sum(run.seconds for run in self.layers)

    @property
    def passed(self) -> bool:
        return bool(self.layers) and all(run.identical for run in self.layers) and self.logits_mismatches == 0


def array_on_rtl(
    a: np.ndarray, w: np.ndarray, s: np.ndarray, config: PEConfig, rows: int, cols: int, simulator: str
) -> tuple[np.ndarray, int, float]:
    """(M, K) @ (K, N) codes with (K,) shifts on the R x C array: its (M, N) float32 result, edges, seconds."""
    scheduled, tiles = schedule_gemm(a, w, s, rows, cols)
    stream = stitch_streams([scheduled], rows, cols)
    array_config = PEConfig(config.fmt_a, config.fmt_w, config.shift_bits, K_MAX_DEFAULT)
    run = play_stream(stream, array_parameters(array_config, rows, cols), simulator)
    return collect_tiles(run.outputs, tiles, a.shape[0], w.shape[1], FP32), stream.cycles, run.seconds


def epilogue(folded: FoldedLinear, array: np.ndarray, leading: tuple[int, ...]) -> torch.Tensor:
    """Spec 2.5 and 6.1 after the array: one FP32 multiply by the output channel's scale, then the bias."""
    y = torch.from_numpy(array * folded.output_scale.numpy()).reshape(*leading, folded.out_features)
    return y if folded.bias is None else y + folded.bias


def forward_on_rtl(
    model: Any, ids: torch.Tensor, *, rows: int = 16, cols: int = 16, simulator: str = "verilator"
) -> ForwardRun:
    """One forward of `ids` (1-D token ids) with every QuantizedLinear of a loaded export on the array.

    ValueError when the export has no such layer, quantizes its attention matmuls or has block-scaled layers
    (the array runs LLM-FP4 linear layers only).
    """
    check_tools(simulator)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    if not layers:
        raise ValueError("this export has no LLM-FP4 linear layer (QuantizedLinear) for the array to run")
    if any(getattr(m, STATE, None) is not None for m in model.modules()):
        raise ValueError("this export quantizes the attention matmuls; the RTL forward runs linear layers only")
    if any(isinstance(m, BlockQuantizedLinear) for m in model.modules()):
        raise ValueError("this export has block-scaled (MXFP4/NVFP4) layers, which the array does not run")
    result = ForwardRun()

    def on_the_array(name: str):
        def hook(module: QuantizedLinear, args: tuple, output: torch.Tensor) -> torch.Tensor:
            folded, x = module.folded, args[0]
            config = folded.pe_config()
            a, w, s = input_codes(folded, x), weight_codes_kn(folded), folded.input_shift.numpy()
            array, cycles, seconds = array_on_rtl(a, w, s, config, rows, cols, simulator)
            golden = gemm(a, w, s, config.fmt_a, config.fmt_w, k_max=config.k_max)
            y = epilogue(folded, array, x.shape[:-1])
            differ = y.view(torch.int32) != output.float().contiguous().view(torch.int32)
            shape = (a.shape[0], a.shape[1], w.shape[1])
            mismatches = int(np.count_nonzero(array.view(np.uint32) != golden.view(np.uint32)))
            result.layers.append(LayerRun(name, shape, cycles, seconds, mismatches, int(torch.count_nonzero(differ))))
            return y.to(output.dtype)

        return hook

    handles = [module.register_forward_hook(on_the_array(name)) for name, module in layers.items()]
    start = time.perf_counter()
    try:
        with torch.no_grad():
            logits_rtl = model(ids[None]).logits.float()
    finally:
        for handle in handles:
            handle.remove()
    result.wall_seconds = time.perf_counter() - start
    with torch.no_grad():
        logits_torch = model(ids[None]).logits.float()
    result.logits_count = logits_rtl.numel()
    result.logits_mismatches = int(torch.count_nonzero(logits_rtl.view(torch.int32) != logits_torch.view(torch.int32)))
    result.perplexity_rtl, result.perplexity_torch = (window_perplexity(lg, ids) for lg in (logits_rtl, logits_torch))
    return result


def window_perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """exp of the mean next-token cross entropy over one window: logits (1, T, vocab), ids (T,)."""
    return float(torch.exp(torch.nn.functional.cross_entropy(logits[0, :-1], ids[1:])))
