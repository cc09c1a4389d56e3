// Sources of fp4_array in compile order (read by the Makefile, fp4sim.rtlsim and Yosys).
fp4_pkg.sv
fp4_round_to_float.sv
fp4_operand_decode.sv
fp4_pe_product.sv
fp4_delay_line.sv
fp4_pe.sv
fp4_array.sv
