// Widths of the MAC datapath (docs/spec.md 2.2-2.3): one formula each, used by
// every module as fp4_pkg::name(...); golden twin: fp4sim/hw/fp4_pkg.py (PEConfig).
package fp4_pkg;
  // Width of the shift port: SHIFT_BITS, or 1 when there is no shift (the port is then ignored).
  function automatic integer shift_port_bits(input integer shift_bits);
    shift_port_bits = (shift_bits > 0) ? shift_bits : 1;
  endfunction

  // S_max: the largest per-input-channel shift a SHIFT_BITS-wide port carries.
  function automatic integer s_max(input integer shift_bits);
    s_max = (1 << shift_bits) - 1;
  endfunction

  // Largest left shift of a significand product: (E_A - 1) + (E_W - 1) + (S_max - s) at its maximum.
  function automatic integer product_shift_max(input integer a_ebits, input integer w_ebits, input integer shift_bits);
    product_shift_max = (1 << a_ebits) - 2 + (1 << w_ebits) - 2 + s_max(shift_bits);
  endfunction

  // Largest significand product, (2^(m_A+1) - 1) * (2^(m_W+1) - 1).
  function automatic integer significand_product_max(input integer a_mbits, input integer w_mbits);
    significand_product_max = ((1 << (a_mbits + 1)) - 1) * ((1 << (w_mbits + 1)) - 1);
  endfunction

  // Width of the signed Kulisch accumulator: bitlength(K_max * P_max) + 1.
  function automatic integer acc_bits(input integer a_ebits, input integer a_mbits, input integer w_ebits,
                                      input integer w_mbits, input integer shift_bits, input integer k_max);
    acc_bits = $clog2(k_max * significand_product_max(a_mbits, w_mbits) + 1)
        + product_shift_max(a_ebits, w_ebits, shift_bits) + 1;
  endfunction

  // Width of the signed product: bitlength(P_max) + 1, an accumulator for one product.
  function automatic integer product_bits(input integer a_ebits, input integer a_mbits, input integer w_ebits,
                                          input integer w_mbits, input integer shift_bits);
    product_bits = acc_bits(a_ebits, a_mbits, w_ebits, w_mbits, shift_bits, 1);
  endfunction

  // log2 of the accumulator's LSB weight: 2 - (bias_A + m_A) - (bias_W + m_W) - S_max.
  function automatic integer lsb_exp(input integer a_bias, input integer a_mbits, input integer w_bias,
                                     input integer w_mbits, input integer shift_bits);
    lsb_exp = 2 - (a_bias + a_mbits) - (w_bias + w_mbits) - s_max(shift_bits);
  endfunction
endpackage
