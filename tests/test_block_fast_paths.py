"""block_gemm's fast paths (docs/spec.md 7.5) against the group-sum paths they replace, bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from block_reference import aligned_group_gemm

from fp4sim.codec.blockscaled import BlockTensor, block_quantize
from fp4sim.gemm.block import _scaled_group_gemm, block_gemm
from fp4sim.gemm.study import parse_accumulation

SCALE_CODES = {
    "nvfp4": np.array([0, 1, 3, 7, 8, 9, 40, 56, 100, 0x7E], np.uint8),  # 0, E4M3 subnormals, 2^-6 .. 448
    "mxfp4": np.array([0, 1, 2, 60, 127, 140, 200, 253, 254], np.uint8),  # 2^-127 .. 2^127
}


ALIGNED = ("aligned_truncate:35", "aligned_truncate:38", "aligned_truncate:39", "aligned_truncate:48")
ALIGNED += ("aligned_truncate:13:16", "aligned_truncate:25:32", "aligned_truncate:8:128", "aligned_truncate:35:1024")
ALIGNED += ("aligned_truncate:13", "aligned_truncate:16", "aligned_truncate:20")  # the study's N at G = 64


def previous_path(a: BlockTensor, w: BlockTensor, accum: str = "exact") -> np.ndarray:
    """FP32 bits the way the library computed every output before the fast paths (NaN rows not masked)."""
    if accum == "exact":
        return _scaled_group_gemm(a, w).view(np.uint32)
    return aligned_group_gemm(a, w, parse_accumulation(accum))


def fast_path(a: BlockTensor, w: BlockTensor, accum: str = "exact") -> np.ndarray:
    with np.errstate(over="ignore"):
        y = block_gemm(a, w, accum=accum)
    return y.view(np.uint32)  # every tensor scale here is 1: the epilogue's multiply is exact


def random_tensor(rng: np.random.Generator, name: str, rows: int, k: int, scale_codes: np.ndarray) -> BlockTensor:
    fmt = block_quantize(np.zeros((1, 1), np.float32), name).fmt
    codes = rng.integers(0, 16, (rows, k), dtype=np.uint8)
    scales = rng.choice(scale_codes, (rows, fmt.blocks(k))).astype(np.uint8)
    return BlockTensor(fmt, codes, scales, np.float32(1.0))


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
@pytest.mark.parametrize("k", [1, 16, 40, 100, 688])
def test_scales_over_the_whole_range(name: str, k: int) -> None:
    """Scales drawn from zero, subnormal and extreme codes: many rows fail the bound and take the group path."""
    rng = np.random.default_rng(k)
    a, w = random_tensor(rng, name, 9, k, SCALE_CODES[name]), random_tensor(rng, name, 7, k, SCALE_CODES[name])
    np.testing.assert_array_equal(fast_path(a, w), previous_path(a, w))


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_narrow_scale_ranges_take_the_fast_path(name: str) -> None:
    """Scales within a few binades (every output inside the float64 bound), with outlier channels."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((33, 300)).astype(np.float32)
    x[:, [3, 77]] *= 50
    y = rng.standard_normal((17, 300)).astype(np.float32)
    a, w = (replace(block_quantize(v, name), tensor_scale=np.float32(1.0)) for v in (x, y))
    np.testing.assert_array_equal(fast_path(a, w), previous_path(a, w))


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_adversarial_sums(name: str) -> None:
    """Cancellation to zero, an all-zero row, subnormal-scale tails beside the largest scales, -0 operands."""
    small, big = SCALE_CODES[name][1], SCALE_CODES[name][-1]
    fmt = block_quantize(np.zeros((1, 1), np.float32), name).fmt
    k = 4 * fmt.block_size
    codes = np.full((5, k), 0x7, np.uint8)  # 6.0
    codes[0, k // 2 :] = 0xF  # -6.0: the row cancels to +0
    codes[1] = 0  # all zero
    codes[2] = 0x8  # all -0: +0 still
    codes[3, 1::2] = 0xF  # alternating signs within blocks
    scales = np.full((5, fmt.blocks(k)), big, np.uint8)
    scales[3:, -1] = small  # a tail block at the smallest scale beside the largest
    a = BlockTensor(fmt, codes, scales, np.float32(1.0))
    w = BlockTensor(fmt, codes[[0, 3, 4]].copy(), scales[[0, 3, 4]].copy(), np.float32(1.0))
    np.testing.assert_array_equal(fast_path(a, w), previous_path(a, w))


@pytest.mark.parametrize("span", [40, 60])
def test_small_terms_beside_cancelling_giants(span: int) -> None:
    """6 * 2^span, 32 terms 0.5 * 2^-span, -6 * 2^span: past 53 bits of span float64 loses small terms."""
    fmt = block_quantize(np.zeros((1, 1), np.float32), "mxfp4").fmt
    codes = np.zeros((4, 96), np.uint8)
    codes[:, 32:64] = 0x1  # 0.5
    codes[:, 0], codes[:, 64] = 0x7, 0xF  # 6, -6
    scales = np.tile(np.array([127 + span, 127 - span, 127 + span], np.uint8), (4, 1))
    a = BlockTensor(fmt, codes, scales, np.float32(1.0))
    w = BlockTensor(fmt, np.full((4, 96), 0x2, np.uint8), np.full((4, 3), 127, np.uint8), np.float32(1.0))  # 1.0
    ones = np.full((4, 4), np.float32(32 * 2.0 ** (-1 - span)).view(np.uint32))  # the 32 small terms of block 0
    np.testing.assert_array_equal(previous_path(a, w), ones)
    np.testing.assert_array_equal(fast_path(a, w), ones)


@pytest.mark.parametrize("accum", ALIGNED)
@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_aligned_truncate_on_both_paths(name: str, accum: str) -> None:
    """Whole-range scales (many fused adds truncate), LLM-like operands (few do), and the adversarial rows."""
    rng = np.random.default_rng(len(accum))
    k = 300
    a, w = random_tensor(rng, name, 6, k, SCALE_CODES[name]), random_tensor(rng, name, 5, k, SCALE_CODES[name])
    np.testing.assert_array_equal(fast_path(a, w, accum), previous_path(a, w, accum))
    x = rng.standard_normal((9, k)).astype(np.float32)
    x[:, [3, 77]] *= 50
    y = rng.standard_normal((7, k)).astype(np.float32)
    a, w = (replace(block_quantize(v, name), tensor_scale=np.float32(1.0)) for v in (x, y))
    np.testing.assert_array_equal(fast_path(a, w, accum), previous_path(a, w, accum))


@pytest.mark.parametrize("accum", ALIGNED)
@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_aligned_truncate_huge_running_sum_and_cancellation(name: str, accum: str) -> None:
    """c built from the largest scales, then blocks at the smallest; sums that cancel; all-zero and -0 rows."""
    fmt = block_quantize(np.zeros((1, 1), np.float32), name).fmt
    small, big, mid = SCALE_CODES[name][1], SCALE_CODES[name][-1], SCALE_CODES[name][len(SCALE_CODES[name]) // 2]
    k = 12 * fmt.block_size + 5
    codes = np.full((6, k), 0x7, np.uint8)  # 6.0
    codes[0, k // 2 :] = 0xF  # -6.0: cancels
    codes[1] = 0
    codes[2] = 0x8  # -0
    codes[3, 1::3] = 0x1  # 0.5 among the 6s
    codes[4, ::2] = 0xE  # -4 and 6 alternating
    scales = np.full((6, fmt.blocks(k)), big, np.uint8)
    scales[:, fmt.blocks(k) // 2 :] = small  # the running sum dwarfs every later block
    scales[5] = mid
    scales[5, 1::2] = small
    a = BlockTensor(fmt, codes, scales, np.float32(1.0))
    w = BlockTensor(fmt, codes[[0, 3, 4, 5]].copy(), scales[[0, 3, 5, 5]].copy(), np.float32(1.0))
    np.testing.assert_array_equal(fast_path(a, w, accum), previous_path(a, w, accum))
