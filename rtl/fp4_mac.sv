// Stand-alone FP4 multiply-accumulate: pe_product plus the Kulisch
// accumulator register, nothing else (no pass-through registers, no
// converter). The unit whose cost docs/hardware.md compares with an INT4 MAC.
module fp4_mac #(
    parameter A_EBITS = 2,
    parameter A_MBITS = 1,
    parameter W_EBITS = 2,
    parameter W_MBITS = 1,
    parameter SHIFT_BITS = 2,
    parameter ACC_BITS = 24,
    parameter SW = (SHIFT_BITS > 0) ? SHIFT_BITS : 1
) (
    input  logic                       clk,
    input  logic                       rst,
    input  logic                       valid,
    input  logic [  A_EBITS+A_MBITS:0] a,
    input  logic [  W_EBITS+W_MBITS:0] w,
    input  logic [             SW-1:0] s,
    output logic signed [ACC_BITS-1:0] acc
);
  localparam SHIFT_MAX = (1 << A_EBITS) - 2 + (1 << W_EBITS) - 2 + (1 << SHIFT_BITS) - 1;
  localparam PRODUCT_BITS = A_MBITS + W_MBITS + 2 + SHIFT_MAX + 1;
  logic signed [PRODUCT_BITS-1:0] product;

  pe_product #(
      .A_EBITS(A_EBITS), .A_MBITS(A_MBITS), .W_EBITS(W_EBITS), .W_MBITS(W_MBITS), .SHIFT_BITS(SHIFT_BITS)
  ) multiply (.a(a), .w(w), .s(s), .p(product));

  always_ff @(posedge clk) begin
    if (rst) acc <= '0;
    else if (valid) acc <= acc + ACC_BITS'(product);
  end
endmodule
