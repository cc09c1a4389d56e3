// Sources of fp4_pe_product in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_pkg.sv
fp4_operand_decode.sv
fp4_pe_product.sv
