// Sources of fp4_operand_decode in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_operand_decode.sv
