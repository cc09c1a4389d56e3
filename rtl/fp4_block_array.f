// Sources of fp4_block_array in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_pkg.sv
fp4_round_to_float.sv
fp4_delay_line.sv
fp4_block_term.sv
fp4_block_fused_add.sv
fp4_block_pe.sv
fp4_block_array.sv
