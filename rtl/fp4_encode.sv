// FP32 -> FP4 quantizing encoder for the activation path (docs/spec.md 1.4,
// 1.5; golden twin: fp4sim.hw.fp4_encode.fp4_encode, i.e.
// fp4sim.encode(x, fmt, shift=shift, nan="encode")).
// Encodes x * 2^shift (the per-input-channel exponent shift) with one
// round-to-nearest-even, saturating at the largest finite value (Inf too).
// NaN has no code in these formats: it becomes zero with the sign inverted,
// as ml_dtypes does.
module fp4_encode #(
    parameter EBITS = 2,
    parameter MBITS = 1,
    parameter BIAS = 1,
    parameter SHIFT_BITS = 2,
    parameter SW = fp4_pkg::shift_port_bits(SHIFT_BITS)
) (
    input  logic [         31:0] x,
    input  logic [       SW-1:0] shift,
    output logic [EBITS+MBITS:0] code
);
  logic sign, is_special, is_nan;
  logic [7:0] field;
  logic [23:0] significand;
  logic signed [11:0] lsb_exp;
  logic [EBITS+MBITS:0] rounded;

  assign sign = x[31];
  assign field = x[30:23];
  assign is_special = field == 8'hFF;
  assign is_nan = is_special && x[22:0] != '0;
  assign significand = {field != 8'h00, x[22:0]};
  integer exponent;
  always @* begin
    // x = significand * 2^(max(field, 1) - 150); the shift raises that exponent
    exponent = ((field == 8'h00) ? 1 : 32'(field)) - 150;
    if (SHIFT_BITS > 0) exponent = exponent + 32'(shift);
    lsb_exp = 12'(exponent);
  end

  fp4_round_to_float #(
      .MAG_BITS(24), .EXP_BITS(12), .EBITS(EBITS), .MBITS(MBITS), .BIAS(BIAS), .IEEE(0)
  ) round (.sign(sign), .mag(significand), .lsb_exp(lsb_exp), .bits(rounded));

  always @* begin
    if (is_nan) code = {~sign, {(EBITS + MBITS) {1'b0}}};
    else if (is_special) code = {sign, {(EBITS + MBITS) {1'b1}}};  // Inf saturates
    else code = rounded;
  end
endmodule
