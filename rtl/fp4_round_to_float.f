// Sources of fp4_round_to_float in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_round_to_float.sv
