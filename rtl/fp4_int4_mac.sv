// INT4 x INT4 multiply-accumulate (two's complement, -8..7): the baseline
// of docs/hardware.md, built the same way as fp4_mac. Golden twin:
// fp4sim.hw.fp4_int4_mac.fp4_int4_mac.
module fp4_int4_mac #(
    parameter ACC_BITS = 20
) (
    input  logic                       clk,
    input  logic                       rst,
    input  logic                       valid,
    input  logic signed [         3:0] a,
    input  logic signed [         3:0] w,
    output logic signed [ACC_BITS-1:0] acc
);
  logic signed [7:0] product;
  assign product = 8'(a) * 8'(w);  // sign-extended operands: -8 * -8 = 64 fits in 8 signed bits

  always_ff @(posedge clk) begin
    if (rst) acc <= '0;
    else if (valid) acc <= acc + ACC_BITS'(product);
  end
endmodule
