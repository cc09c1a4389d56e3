// Sources of fp4_delay_line in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_delay_line.sv
