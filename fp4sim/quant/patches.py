"""A vision transformer's patch embedding, a convolution whose stride equals its kernel, as the linear layer it is.

Such a convolution sees each image patch once: with ``im2col`` (``F.unfold``)
the image becomes rows of patches, ``(batch, patches, channels * kh * kw)``,
in the order the weight ``(out, channels, kh, kw)`` flattens to
``(out, channels * kh * kw)``; the convolution is then ``patches @ W^T + b``,
one output row per patch. So it calibrates, exports and runs on the MAC
array as any linear layer, and :class:`PatchEmbeddingLinear` puts the rows
back into the convolution's output shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def is_patch_conv(module: nn.Module) -> bool:
    """Whether `module` is a 2-D convolution over non-overlapping patches (stride = kernel, no padding, dilation or
    groups): the linear layer of a patch embedding."""
    return (
        isinstance(module, nn.Conv2d)
        and module.stride == module.kernel_size
        and module.padding == (0, 0)
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def to_patches(kernel_size: tuple[int, int], images: torch.Tensor) -> torch.Tensor:
    """(batch, channels, height, width) images as (batch, patches, channels * kh * kw) rows, patches row-major."""
    return F.unfold(images, kernel_size, stride=kernel_size).transpose(1, 2)


def linear_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The convolution's weight as the (out, channels * kh * kw) matrix that multiplies to_patches' rows."""
    return conv.weight.reshape(conv.out_channels, -1)


class PatchEmbeddingLinear(nn.Module):
    """A patch convolution computed by `linear` (any module mapping rows of patches to rows of outputs, e.g. a
    quantized linear layer): images (batch, channels, H, W) in, the convolution's (batch, out, H / kh, W / kw) out."""

    def __init__(self, kernel_size: tuple[int, int], linear: nn.Module) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.linear = linear
        # ViT and DeiT read the projection's weight dtype to cast the pixel values to: float32, as `linear` takes
        self.register_buffer("weight", torch.empty(0), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows = self.linear(to_patches(self.kernel_size, images))  # (batch, patches, out)
        height, width = (size // kernel for size, kernel in zip(images.shape[-2:], self.kernel_size, strict=True))
        return rows.transpose(1, 2).reshape(images.shape[0], -1, height, width)
