// Exact product a * w * 2^-s in accumulator LSB units (docs/spec.md 2.2;
// golden twin: fp4sim.hw.fp4_pe_product.fp4_pe_product): the significands
// multiply as integers, the exponents and the shift become one left shift
// by (Ea - 1) + (Ew - 1) + (S_max - s), and the sign is applied last.
module fp4_pe_product #(
    parameter A_EBITS = 2,
    parameter A_MBITS = 1,
    parameter W_EBITS = 2,
    parameter W_MBITS = 1,
    parameter SHIFT_BITS = 2,  // 0: no shift (the s port is ignored)
    parameter SW = fp4_pkg::shift_port_bits(SHIFT_BITS),
    parameter PRODUCT_BITS = fp4_pkg::product_bits(A_EBITS, A_MBITS, W_EBITS, W_MBITS, SHIFT_BITS)
) (
    input  logic        [A_EBITS+A_MBITS:0] a,
    input  logic        [W_EBITS+W_MBITS:0] w,
    input  logic        [           SW-1:0] s,
    output logic signed [ PRODUCT_BITS-1:0] p
);
  localparam S_MAX = fp4_pkg::s_max(SHIFT_BITS);
  localparam SIG_BITS = A_MBITS + W_MBITS + 2;
  localparam MAG_BITS = PRODUCT_BITS - 1;

  logic sign_a, sign_w;
  logic [A_MBITS:0] sig_a;
  logic [W_MBITS:0] sig_w;
  logic [A_EBITS-1:0] exp_a;
  logic [W_EBITS-1:0] exp_w;
  logic [SIG_BITS-1:0] sig_product;
  logic [MAG_BITS-1:0] magnitude;
  integer amount;

  fp4_operand_decode #(.EBITS(A_EBITS), .MBITS(A_MBITS)) decode_a (.code(a), .sign(sign_a), .significand(sig_a), .exp_m1(exp_a));
  fp4_operand_decode #(.EBITS(W_EBITS), .MBITS(W_MBITS)) decode_w (.code(w), .sign(sign_w), .significand(sig_w), .exp_m1(exp_w));

  assign sig_product = SIG_BITS'(sig_a) * SIG_BITS'(sig_w);

  always @* begin
    amount = 32'(exp_a) + 32'(exp_w) + S_MAX;
    if (SHIFT_BITS > 0) amount = amount - 32'(s);
    magnitude = MAG_BITS'(sig_product) << amount;
    p = (sign_a ^ sign_w) ? -$signed({1'b0, magnitude}) : $signed({1'b0, magnitude});
  end
endmodule
