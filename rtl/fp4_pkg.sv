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

  // Block-scaled array (docs/spec.md 8); block_format 0 = MXFP4 (E8M0 scales), 1 = NVFP4 (unsigned E4M3).
  // V_max: the largest |V| = |P| * significand_a * significand_w, |P| <= 16 * 12 * 12 (spec 8.3).
  function automatic integer block_value_max(input integer block_format);
    block_value_max = (block_format != 0) ? 2304 * 15 * 15 : 2304;
  endfunction

  // Width of the signed V.
  function automatic integer block_value_bits(input integer block_format);
    block_value_bits = $clog2(block_value_max(block_format) + 1) + 1;
  endfunction

  // SHIFT_MAX: the largest shift_a + shift_w (508 MXFP4, 28 NVFP4).
  function automatic integer block_shift_max(input integer block_format);
    block_shift_max = (block_format != 0) ? 28 : 508;
  endfunction

  // Width of the unsigned shift.
  function automatic integer block_shift_bits(input integer block_format);
    block_shift_bits = $clog2(block_shift_max(block_format) + 1);
  endfunction

  // TERM_LSB = 2 SCALE_LSB - 2: log2 of the exact accumulator's LSB (-256 MXFP4, -20 NVFP4).
  function automatic integer block_term_lsb(input integer block_format);
    block_term_lsb = (block_format != 0) ? -20 : -256;
  endfunction

  // KE: a nonzero term's LSB lies KE binades below its alignment exponent (spec 8.3).
  function automatic integer block_align_offset(input integer block_format);
    block_align_offset = (block_format != 0) ? 8 : 2;
  endfunction

  // Exact accumulator: bitlength(ceil(K_MAX / 16) * V_max) + SHIFT_MAX + 1 (spec 8.4; K_MAX <= 65536).
  function automatic integer block_acc_bits(input integer block_format, input integer k_max);
    block_acc_bits = $clog2((k_max + 15) / 16 * block_value_max(block_format) + 1) + block_shift_max(block_format) + 1;
  endfunction

  // Fused adder of aligned_truncate: N + 12 + bitlength(F + 1) + 1 (spec 8.5).
  function automatic integer block_sum_bits(input integer frac_bits, input integer fused_groups);
    block_sum_bits = frac_bits + 12 + $clog2(fused_groups + 2) + 1;
  endfunction
endpackage
