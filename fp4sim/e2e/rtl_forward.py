"""A whole forward pass with every quantized matmul computed by the Verilog array, through the bulk player.

Each QuantizedLinear's input is encoded as spec 6.1 says, scheduled as spec
3.4 says (output tiles row-major, the layer's full K per tile, back to back
behind one reset) and played through ``tb/fp4_array_player.sv`` in one run
(:mod:`fp4sim.rtlsim.player`). The pulses are reassembled into the array's
FP32 result, which must equal ``fp4sim.gemm`` bit for bit; the epilogue of
spec 2.5 (per-channel scale, then bias) gives the layer's output, which must
equal the torch path's on the same input bit for bit, and it replaces that
output in the forward, so every later layer sees what the RTL computed.

An MXFP4 / NVFP4 export's BlockQuantizedLinear layers run the same way on
``rtl/fp4_block_array.sv`` (``tb/fp4_block_array_player.sv``, spec 8): the
input block-quantized as the layer does at run time (spec 7.6), the GEMM
scheduled as spec 8.8 says, the array's FP32 result times NVFP4's tensor
scales (the epilogue outside the array) equal to ``fp4sim.block_gemm`` bit
for bit under the run's accumulation model, then the bias. In ``exact``
(8.4) each layer's output and the logits are checked against the torch
path; under ``aligned_truncate:N[:G]`` (8.5), which the torch path does not
compute, against the golden simulator under the same model.

When the export quantizes the attention matmuls (spec 6.3), Q K^T and P V
run the same way: both operands encoded with their per-tensor scales, no
shifts (an array with SHIFT_BITS = 0), one GEMM per batch x head slice, all
slices of one matmul stitched behind one reset and played in one run, then
the epilogue's single FP32 multiply by fp32(alpha_L alpha_R).

Every matmul runs on one array build per format pair and shift width: K_MAX is the array's
default, enough for any layer here, and the exact accumulator gives the same
bits for any K_MAX >= K (spec 2.3). Needs the source tree and the simulator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..codec.blockscaled import BlockTensor
from ..gemm import gemm
from ..gemm.block import block_gemm
from ..hw.fp4_array import ArrayOutputs, collect_tiles, schedule_gemm, stitch_streams
from ..hw.fp4_block_array import collect_block_tiles, schedule_block_gemm, stitch_block_gemms
from ..hw.fp4_pkg import K_MAX_DEFAULT, BlockConfig, PEConfig
from ..hw.fp4_round_to_float import FP32
from ..quant.attention import STATE, FoldedAttention, MatmulQuant, matmul_codes
from ..quant.blockquant import quantize_input
from ..quant.folded import FoldedLinear, input_codes, weight_codes_kn
from ..quant.modules import BlockQuantizedLinear, QuantizedLinear, SimulatedLinear
from ..rtlsim.player import play_stream
from ..rtlsim.runner import array_parameters, block_array_config, check_tools


@dataclass
class LayerRun:
    """One quantized matmul of the forward, computed by the array: a linear layer, or an attention matmul
    ("<attention module>.scores" for Q K^T, ".context" for P V) over its batch x head slices."""

    layer: str
    shape: tuple[int, int, int]  # (M, K, N) of one GEMM: tokens, in_features, out_features for a linear layer
    cycles: int  # array edges played
    seconds: float  # simulator wall time
    array_mismatches: int  # array outputs (FP32, before the epilogue) that differ from fp4sim.gemm
    torch_mismatches: int  # outputs that differ from the torch path's on the same input
    slices: int = 1  # GEMMs of this shape: 1 for a linear layer, batch x heads for an attention matmul

    @property
    def identical(self) -> bool:
        return self.array_mismatches == 0 and self.torch_mismatches == 0

    @property
    def outputs(self) -> int:
        return self.slices * self.shape[0] * self.shape[2]


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


def arrays_on_rtl(
    gemms: list[tuple[np.ndarray, np.ndarray, np.ndarray]], config: PEConfig, rows: int, cols: int, simulator: str
) -> tuple[list[np.ndarray], int, float]:
    """GEMMs of (M, K) @ (K, N) codes with (K,) shifts on one R x C array, each scheduled as spec 3.4 says and all
    stitched behind one reset into one run: each one's (M, N) float32 result, the edges, the simulator's seconds."""
    scheduled = [schedule_gemm(a, w, s, rows, cols) for a, w, s in gemms]
    stream = stitch_streams([gemm_stream for gemm_stream, _ in scheduled], rows, cols)
    array_config = PEConfig(config.fmt_a, config.fmt_w, config.shift_bits, K_MAX_DEFAULT)
    run = play_stream(stream, array_parameters(array_config, rows, cols), simulator)
    owner = np.repeat(np.arange(len(gemms)), [len(tiles) for _, tiles in scheduled])  # tile (in stream order) -> GEMM
    tile = pulse_tiles(run.outputs, cols)
    if tile.size and tile.max() >= owner.size:
        raise RuntimeError(f"a PE pulsed {tile.max() + 1} times for {owner.size} tiles")
    results = []
    for index, ((a, w, _), (_, tiles)) in enumerate(zip(gemms, scheduled, strict=True)):
        mine = ArrayOutputs(*(field[owner[tile] == index] for field in run.outputs))
        results.append(collect_tiles(mine, tiles, a.shape[0], w.shape[1], FP32))
    return results, stream.cycles, run.seconds


def block_array_on_rtl(
    a: BlockTensor, w: BlockTensor, config: BlockConfig, rows: int, cols: int, simulator: str
) -> tuple[np.ndarray, int, float]:
    """``a @ w.T`` (a (M, K), w (N, K) BlockTensors of config's format) on one R x C fp4_block_array, scheduled as
    spec 8.8 says behind one reset: the (M, N) float32 result times NVFP4's tensor scales (the epilogue outside the
    array, spec 7.5; nothing for MXFP4), the edges, the simulator's seconds."""
    stream, tiles = stitch_block_gemms([schedule_block_gemm(a, w, rows, cols)])
    run = play_stream(stream, config.rtl_parameters(rows, cols), simulator)
    z = collect_block_tiles(run.outputs, tiles, a.shape[0], w.shape[0], rows, cols)
    return (z * np.float32(a.tensor_scale * w.tensor_scale) if a.fmt.tensor_scale else z), stream.cycles, run.seconds


def pulse_tiles(outputs: ArrayOutputs, cols: int) -> np.ndarray:
    """The tile of each pulse (in edge order) in its stream: a PE's j-th pulse is the j-th tile's (spec 3.4)."""
    pe = outputs.row * cols + outputs.col
    order = np.argsort(pe, kind="stable")
    by_pe = pe[order]
    tile = np.empty_like(pe)
    tile[order] = np.arange(pe.size) - np.searchsorted(by_pe, by_pe)
    return tile


def bits_differ(x: np.ndarray, y: np.ndarray) -> int:
    """How many elements of two float32 arrays differ in their bits."""
    return int(np.count_nonzero(x.view(np.uint32) != y.view(np.uint32)))


def epilogue(folded: FoldedLinear, array: np.ndarray, leading: tuple[int, ...]) -> torch.Tensor:
    """Spec 2.5 and 6.1 after the array: one FP32 multiply by the output channel's scale, then the bias."""
    y = torch.from_numpy(array * folded.output_scale.numpy()).reshape(*leading, folded.out_features)
    return y if folded.bias is None else y + folded.bias


def forward_on_rtl(
    model: Any,
    ids: torch.Tensor,
    *,
    rows: int = 16,
    cols: int = 16,
    simulator: str = "verilator",
    accum: str = "exact",
) -> ForwardRun:
    """One forward of `ids` (1-D token ids) with every quantized linear layer of a loaded export on its array:
    QuantizedLinear (LLM-FP4) on fp4_array, and the attention matmuls when the export quantizes them;
    BlockQuantizedLinear (MXFP4 / NVFP4) on fp4_block_array under accumulation model `accum`.

    Each matmul is checked against fp4sim.gemm / fp4sim.block_gemm under `accum`, and each layer's output and the
    logits against the reference forward: the torch path when `accum` is "exact", else the golden simulator under
    `accum` (the torch path is exact; the layers' backends are restored afterwards).

    ValueError when the export has no such layer, has weight-only layers (float activations), or `accum` is not
    a model its arrays run (fp4_array: exact only; fp4_block_array: :func:`~fp4sim.rtlsim.runner.block_array_config`).
    """
    check_tools(simulator)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, SimulatedLinear)}
    if not layers:
        raise ValueError("this export has no quantized linear layer for the arrays to run")
    weight_only = [name for name, m in layers.items() if m.input_format is None]
    if weight_only:
        raise ValueError(
            f"{weight_only[0]} and {len(weight_only) - 1} more layers are weight-only (float activations); the "
            "arrays take FP4 on both sides"
        )
    block_configs = {
        name: block_array_config(m.layer.weight.fmt.name, accum)
        for name, m in layers.items()
        if isinstance(m, BlockQuantizedLinear)
    }
    if accum != "exact" and len(block_configs) < len(layers):
        raise ValueError(f"this export has LLM-FP4 layers; rtl/fp4_array.sv accumulates exactly, got accum {accum!r}")
    attention = {name: m for name, m in model.named_modules() if isinstance(getattr(m, STATE, None), FoldedAttention)}
    result = ForwardRun()

    def on_the_array(name: str):
        def hook(module: QuantizedLinear, args: tuple, output: torch.Tensor) -> torch.Tensor:
            folded, x = module.folded, args[0]
            config = folded.pe_config()
            a, w, s = input_codes(folded, x), weight_codes_kn(folded), folded.input_shift.numpy()
            [array], cycles, seconds = arrays_on_rtl([(a, w, s)], config, rows, cols, simulator)
            golden = gemm(a, w, s, config.fmt_a, config.fmt_w, k_max=config.k_max)
            y = epilogue(folded, array, x.shape[:-1])
            torch_mismatches = bits_differ(y.numpy(), output.float().contiguous().numpy())
            shape = (a.shape[0], a.shape[1], w.shape[1])
            result.layers.append(LayerRun(name, shape, cycles, seconds, bits_differ(array, golden), torch_mismatches))
            return y.to(output.dtype)

        return hook

    def on_the_block_array(name: str):
        def hook(module: BlockQuantizedLinear, args: tuple, output: torch.Tensor) -> torch.Tensor:
            layer, x = module.layer, args[0]
            a, w = quantize_input(layer, x), layer.weight
            array, cycles, seconds = block_array_on_rtl(a, w, block_configs[name], rows, cols, simulator)
            y = torch.from_numpy(array).reshape(*x.shape[:-1], layer.out_features)
            y = y if layer.bias is None else y + layer.bias
            torch_mismatches = bits_differ(y.numpy(), output.float().contiguous().numpy())
            mismatches = bits_differ(array, block_gemm(a, w, accum=accum))
            result.layers.append(LayerRun(name, (*a.shape, w.shape[0]), cycles, seconds, mismatches, torch_mismatches))
            return y.to(output.dtype)

        return hook

    def attention_on_the_array(name: str):
        def hook(
            which: str, left: torch.Tensor, right: torch.Tensor, quant: MatmulQuant, output: torch.Tensor
        ) -> torch.Tensor:
            a, w, config, scale = matmul_codes(left, right, quant)
            shifts = np.zeros(a.shape[-1], np.uint8)
            slices = list(zip(a, w, strict=True))
            arrays, cycles, seconds = arrays_on_rtl([(*ab, shifts) for ab in slices], config, rows, cols, simulator)
            array = np.stack(arrays)
            golden = np.stack(
                [gemm(*ab, None, config.fmt_a, config.fmt_w, shift_bits=0, k_max=config.k_max) for ab in slices]
            )
            y = torch.from_numpy(array * scale).reshape(output.shape)  # spec 6.3: one FP32 multiply
            torch_mismatches = bits_differ(y.numpy(), output.float().contiguous().numpy())
            shape, mismatches = (a.shape[1], a.shape[2], w.shape[2]), bits_differ(array, golden)
            result.layers.append(
                LayerRun(f"{name}.{which}", shape, cycles, seconds, mismatches, torch_mismatches, len(slices))
            )
            return y.to(output.dtype)

        return hook

    handles = [
        module.register_forward_hook(
            (on_the_block_array if isinstance(module, BlockQuantizedLinear) else on_the_array)(name)
        )
        for name, module in layers.items()
    ]
    for name, module in attention.items():
        setattr(module, STATE, replace(getattr(module, STATE), on_matmul=attention_on_the_array(name)))
    backends = {name: (m.backend, m.accum) for name, m in layers.items()}
    for module in layers.values():  # the reference each layer's output is checked against
        module.set_backend("torch" if accum == "exact" else "simulator", accum)
    try:
        start = time.perf_counter()
        try:
            with torch.no_grad():
                logits_rtl = model(ids[None]).logits.float()
        finally:
            for handle in handles:
                handle.remove()
            for module in attention.values():
                setattr(module, STATE, replace(getattr(module, STATE), on_matmul=None))
        result.wall_seconds = time.perf_counter() - start
        with torch.no_grad():
            logits_torch = model(ids[None]).logits.float()
    finally:
        for name, module in layers.items():
            module.set_backend(*backends[name])
    result.logits_count = logits_rtl.numel()
    result.logits_mismatches = int(torch.count_nonzero(logits_rtl.view(torch.int32) != logits_torch.view(torch.int32)))
    result.perplexity_rtl, result.perplexity_torch = (window_perplexity(lg, ids) for lg in (logits_rtl, logits_torch))
    return result


def window_perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """exp of the mean next-token cross entropy over one window: logits (1, T, vocab), ids (T,)."""
    return float(torch.exp(torch.nn.functional.cross_entropy(logits[0, :-1], ids[1:])))
