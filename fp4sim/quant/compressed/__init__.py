"""FP4 checkpoints from the tools people deploy with (docs/spec.md 7.8, docs/quantization.md).

``codec`` moves one block tensor into and out of the compressed-tensors format
(vLLM's), ``write`` exports an MXFP4 / NVFP4 model to it, ``read`` loads such a
checkpoint as fp4sim block layers, ``modelopt`` loads an NVIDIA ModelOpt NVFP4
export, and ``check`` is ``fp4sim check``. export.load_export dispatches here.
"""
