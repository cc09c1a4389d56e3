"""The same quantize command gives byte-identical exports run after run and on 1 or 2 threads (issue 19).

Thread counts are set in-process for both pools fp4sim uses: Numba's (codec, GEMM kernels) and torch's (model
forwards, BLAS). The quantizer rounds to nearest everywhere; stochastic rounding, which only the codec offers, is
checked for thread-count independence in test_codec_properties.py.
"""

from __future__ import annotations

from pathlib import Path

import numba
import pytest
import torch

from fp4sim.quant.config import QuantConfig
from fp4sim.quant.quantize import quantize_checkpoint

FAST = {"grid_points": 5, "rounds": 1, "calib_samples": 2, "calib_length": 32}
CALIB = (Path(__file__).resolve().parents[1] / "models" / "shakespeare" / "valid.txt").read_text(encoding="utf-8")
CALIB = CALIB[:20000]


def quantize(checkpoint: Path, out: Path, config: QuantConfig, threads: int) -> dict[str, bytes]:
    """Every file of the export, by name, quantized with `threads` threads in both pools."""
    numba_threads, torch_threads = numba.get_num_threads(), torch.get_num_threads()
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(threads)
        quantize_checkpoint(checkpoint, CALIB, config, out, progress=False)
    finally:
        numba.set_num_threads(numba_threads)
        torch.set_num_threads(torch_threads)
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


@pytest.mark.parametrize(
    "config",
    [QuantConfig(method="fpq", quantize_attention=True, **FAST), QuantConfig(method="nvfp4", **FAST)],
    ids=["fpq", "nvfp4"],
)
def test_exports_are_byte_identical_across_runs_and_thread_counts(checkpoint: Path, tmp_path: Path, config) -> None:
    first = quantize(checkpoint, tmp_path / "a", config, threads=2)
    assert quantize(checkpoint, tmp_path / "b", config, threads=2) == first, "a second run differs"
    assert quantize(checkpoint, tmp_path / "c", config, threads=1) == first, "one thread differs from two"
