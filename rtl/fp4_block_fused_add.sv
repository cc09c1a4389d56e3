// One fused add of aligned_truncate:N (docs/spec.md 8.5; golden twin:
// fp4sim.hw.fp4_block_fused_add.fp4_block_fused_add): the running FP32 sum c and the terms
// whose mask bit is set are aligned to the largest exponent, each truncated toward zero
// FRAC_BITS bits below it, summed exactly, and the sum truncated to FP32 (+0 if it truncates to 0).
// Term i is value_i * 2^(exponent_i - KE), KE = fp4_pkg::block_align_offset(BLOCK_FORMAT).
module fp4_block_fused_add #(
    parameter BLOCK_FORMAT = 0,
    parameter FRAC_BITS = 35,
    parameter TERMS = 4,
    parameter VB = fp4_pkg::block_value_bits(BLOCK_FORMAT)
) (
    input  logic [        31:0] c,
    input  logic [TERMS*VB-1:0] values,  // term i: signed V at [i*VB +: VB]
    input  logic [TERMS*10-1:0] exponents,  // term i: signed E at [i*10 +: 10]
    input  logic [   TERMS-1:0] mask,  // term i takes part
    output logic [        31:0] sum
);
  localparam SB = fp4_pkg::block_sum_bits(FRAC_BITS, TERMS);
  localparam KE = fp4_pkg::block_align_offset(BLOCK_FORMAT);
  // A term's magnitude moves left by N - KE - (e_max - E): a constant left part and a variable right part.
  localparam TERM_LEFT = (FRAC_BITS > KE) ? FRAC_BITS - KE : 0;
  localparam TERM_RIGHT = (FRAC_BITS > KE) ? 0 : KE - FRAC_BITS;
  localparam C_LEFT = (FRAC_BITS > 23) ? FRAC_BITS - 23 : 0;
  localparam C_RIGHT = (FRAC_BITS > 23) ? 0 : 23 - FRAC_BITS;
  // Working width: the sum's SB bits, and room for an operand before a right shift (small N) and for the converter.
  localparam WB0 = (SB > VB + TERM_LEFT) ? SB : VB + TERM_LEFT;
  localparam WB = (WB0 > 25) ? WB0 : 25;

  integer i, top, e, c_exponent;
  logic [WB-1:0] aligned, magnitude;
  logic signed [WB-1:0] total;
  logic [VB-1:0] v, v_magnitude;
  logic [31:0] bits;

  always @* begin
    c_exponent = (c[30:23] == 8'd0) ? -126 : {24'd0, c[30:23]} - 127;
    top = c_exponent;
    for (i = 0; i < TERMS; i = i + 1) begin
      e = 32'($signed(exponents[i*10+:10]));
      if (mask[i] && e > top) top = e;
    end
    aligned = ((WB'({c[30:23] != 8'd0, c[22:0]}) << C_LEFT) >> (top - c_exponent + C_RIGHT));
    total = c[31] ? -aligned : aligned;
    for (i = 0; i < TERMS; i = i + 1) begin
      v = values[i*VB+:VB];
      e = 32'($signed(exponents[i*10+:10]));
      v_magnitude = v[VB-1] ? -v : v;
      aligned = (WB'(v_magnitude) << TERM_LEFT) >> (top - e + TERM_RIGHT);
      if (mask[i]) total = v[VB-1] ? total - aligned : total + aligned;
    end
    magnitude = total[WB-1] ? -total : total;
  end

  fp4_round_to_float #(
      .MAG_BITS(WB), .EXP_BITS(12), .EBITS(8), .MBITS(23), .BIAS(127), .IEEE(1), .TOWARD_ZERO(1)
  ) truncate (.sign(total[WB-1]), .mag(magnitude), .lsb_exp(12'(top - FRAC_BITS)), .bits(bits));

  assign sum = (bits[30:0] == 31'd0) ? 32'd0 : bits;  // a sum truncated to zero is +0
endmodule
