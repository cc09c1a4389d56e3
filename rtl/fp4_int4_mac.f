// Sources of fp4_int4_mac in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_int4_mac.sv
