// Sources of fp4_block_fused_add in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_pkg.sv
fp4_round_to_float.sv
fp4_block_fused_add.sv
