// Stand-alone FP4 multiply-accumulate: fp4_pe_product plus the Kulisch
// accumulator register, nothing else (no pass-through registers, no
// converter). The unit whose cost docs/hardware.md compares with an INT4 MAC.
// Golden twin: fp4sim.hw.fp4_mac.fp4_mac (spec 2.2, 2.3).
module fp4_mac #(
    parameter A_EBITS = 2,
    parameter A_MBITS = 1,
    parameter W_EBITS = 2,
    parameter W_MBITS = 1,
    parameter SHIFT_BITS = 2,
    parameter ACC_BITS = 24,
    parameter SW = fp4_pkg::shift_port_bits(SHIFT_BITS)
) (
    input  logic                       clk,
    input  logic                       rst,
    input  logic                       valid,
    input  logic [  A_EBITS+A_MBITS:0] a,
    input  logic [  W_EBITS+W_MBITS:0] w,
    input  logic [             SW-1:0] s,
    output logic signed [ACC_BITS-1:0] acc
);
  localparam PRODUCT_BITS = fp4_pkg::product_bits(A_EBITS, A_MBITS, W_EBITS, W_MBITS, SHIFT_BITS);
  logic signed [PRODUCT_BITS-1:0] product;

  fp4_pe_product #(
      .A_EBITS(A_EBITS), .A_MBITS(A_MBITS), .W_EBITS(W_EBITS), .W_MBITS(W_MBITS), .SHIFT_BITS(SHIFT_BITS)
  ) multiply (.a(a), .w(w), .s(s), .p(product));

  always_ff @(posedge clk) begin
    if (rst) acc <= '0;
    else if (valid) acc <= acc + ACC_BITS'(product);
  end
endmodule
