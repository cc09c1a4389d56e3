// Sources of fp4_mac in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_pkg.sv
fp4_operand_decode.sv
fp4_pe_product.sv
fp4_mac.sv
