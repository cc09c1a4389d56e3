// Round sign * mag * 2^lsb_exp once, to nearest with ties to even, into a
// binary floating-point code (docs/spec.md 2.4; golden twin:
// fp4sim.hw.fp4_round_to_float.fp4_round_to_float). Shared by the
// accumulator converter and the FP32 -> FP4 encoder.
//   IEEE = 1: the all-ones exponent is reserved, overflow gives Inf.
//   IEEE = 0: every code is finite, overflow saturates to the largest value.
//   TOWARD_ZERO = 1: truncate instead (aligned_truncate, spec 2.6 and 8.5); IEEE overflow gives the
//   largest finite value.
// A zero magnitude gives a zero with the given sign.
module fp4_round_to_float #(
    parameter MAG_BITS = 32,  // width of the magnitude
    parameter EXP_BITS = 12,  // width of the signed LSB exponent
    parameter EBITS = 8,
    parameter MBITS = 23,
    parameter BIAS = 127,
    parameter IEEE = 1,
    parameter TOWARD_ZERO = 0
) (
    input  logic                       sign,
    input  logic [       MAG_BITS-1:0] mag,
    input  logic signed [EXP_BITS-1:0] lsb_exp,
    output logic [      EBITS+MBITS:0] bits
);
  localparam QW = MBITS + 2;  // rounded significand plus a carry bit
  localparam EMIN = 1 - BIAS;
  localparam MAX_FIELD = (1 << EBITS) - 1;

  integer i, top, lsb, qexp, drop, field, mant;
  logic [QW-1:0] q;
  logic [EBITS+MBITS-1:0] code;
  logic guard, sticky;

  always @* begin
    top = 0;
    for (i = 0; i < MAG_BITS; i = i + 1) if (mag[i]) top = i;
    lsb = 32'(lsb_exp);  // sign-extends: lsb_exp is signed
    // ulp exponent: the top bit keeps MBITS bits below it, but never below the subnormal step
    qexp = ((top + lsb > EMIN) ? top + lsb : EMIN) - MBITS;
    drop = qexp - lsb;
    guard = 1'b0;
    sticky = 1'b0;
    if (drop <= 0) begin
      q = QW'(mag << (-drop));
    end else begin
      q = QW'(mag >> drop);
      if (drop <= MAG_BITS) guard = mag[drop-1];
      if (drop >= 2 && drop <= MAG_BITS) sticky = |(mag << (MAG_BITS - drop + 1));
      if (TOWARD_ZERO != 0) guard = 1'b0;  // never round up
    end
    if (guard && (sticky || q[0])) q = q + 1'b1;
    if (q[QW-1]) begin  // rounding carried into the next binade
      q = q >> 1;
      qexp = qexp + 1;
    end
    if (q[MBITS]) begin
      field = qexp + MBITS + BIAS;
      mant = {{(32 - MBITS - 1) {1'b0}}, q[MBITS:0]} - (1 << MBITS);
    end else begin
      field = 0;
      mant = {{(32 - MBITS - 1) {1'b0}}, q[MBITS:0]};
    end
    if (IEEE != 0 && field >= MAX_FIELD && TOWARD_ZERO != 0) begin
      field = MAX_FIELD - 1;
      mant  = (1 << MBITS) - 1;
    end else if (IEEE != 0 && field >= MAX_FIELD) begin
      field = MAX_FIELD;
      mant  = 0;
    end else if (IEEE == 0 && field > MAX_FIELD) begin
      field = MAX_FIELD;
      mant  = (1 << MBITS) - 1;
    end
    code = (EBITS + MBITS)'(field * (1 << MBITS) + mant);
    if (mag == 0) code = '0;
    bits = {sign, code};
  end
endmodule
