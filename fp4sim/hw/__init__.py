"""The golden model of the RTL: one module per module of rtl/, each named after it (docs/spec.md 2, 3, 5).

``fp4_pkg`` holds the parameters and widths (rtl/fp4_pkg.sv); ``fp4_operand_decode``,
``fp4_pe_product``, ``fp4_mac``, ``fp4_round_to_float``, ``fp4_pe``, ``fp4_delay_line``,
``fp4_array``, ``fp4_encode`` and ``fp4_int4_mac`` each model the RTL module of the same name
and are what its testbench (tb/test_<name>.py) judges it by. The block-scaled array of MXFP4 / NVFP4
(docs/spec.md 8): ``fp4_block_term``, ``fp4_block_fused_add``, ``fp4_block_pe``, ``fp4_block_array``,
with its parameters in ``fp4_pkg.BlockConfig``.
"""
