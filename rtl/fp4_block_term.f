// Sources of fp4_block_term in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_pkg.sv
fp4_block_term.sv
