"""Two 4-bit codes per byte, element 0 in the low nibble; torch float4 view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fp4sim


def test_layout_element_zero_in_the_low_nibble():
    packed = fp4sim.pack_fp4(np.array([0x1, 0x2, 0xA, 0xF], np.uint8))
    np.testing.assert_array_equal(packed, [0x21, 0xFA])


def test_round_trip_any_leading_shape(rng):
    codes = rng.integers(0, 16, size=(3, 2, 10)).astype(np.uint8)
    packed = fp4sim.pack_fp4(codes)
    assert packed.shape == (3, 2, 5)
    np.testing.assert_array_equal(fp4sim.unpack_fp4(packed), codes)


def test_every_byte_unpacks_and_repacks():
    packed = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(fp4sim.pack_fp4(fp4sim.unpack_fp4(packed)), packed)


def test_torch_float4_view_shares_memory(rng):
    codes = fp4sim.encode(rng.standard_normal(64).astype(np.float32), "float4_e2m1fn")
    packed = fp4sim.pack_fp4(codes)
    view = fp4sim.as_float4_e2m1fn_x2(packed)
    assert view.dtype == torch.float4_e2m1fn_x2 and view.shape == (32,)
    assert view.data_ptr() == packed.ctypes.data  # a view, not a copy
    np.testing.assert_array_equal(view.view(torch.uint8).numpy(), packed)


def test_torch_in_torch_out():
    t = torch.tensor([[1, 2, 3, 4]], dtype=torch.uint8)
    packed = fp4sim.pack_fp4(t)
    assert isinstance(packed, torch.Tensor) and packed.tolist() == [[0x21, 0x43]]
    assert fp4sim.unpack_fp4(packed).tolist() == [[1, 2, 3, 4]]


def test_bad_input():
    with pytest.raises(ValueError, match="even length"):
        fp4sim.pack_fp4(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"4-bit \(0..15\); found 16 at index \(1,\)"):
        fp4sim.pack_fp4(np.array([1, 16], np.uint8))
    with pytest.raises(TypeError, match="must be uint8"):
        fp4sim.pack_fp4(np.zeros(2, np.int32))
    with pytest.raises(TypeError, match="must be uint8"):
        fp4sim.as_float4_e2m1fn_x2(torch.zeros(2, dtype=torch.int16))
