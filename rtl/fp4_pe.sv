// One processing element of the output-stationary array (docs/spec.md 3.2):
// passes activations right and weights down through registers, adds the
// exact product to a Kulisch accumulator, and on a tile's last product
// converts the sum to the output format (fp4_round_to_float) and restarts at 0.
// Golden twin: fp4sim.hw.fp4_pe.fp4_pe.
module fp4_pe #(
    parameter A_EBITS = 2,
    parameter A_MBITS = 1,
    parameter W_EBITS = 2,
    parameter W_MBITS = 1,
    parameter SHIFT_BITS = 2,
    parameter ACC_BITS = 28,
    parameter LSB_EXP = -5,  // log2 of the accumulator LSB (spec 2.2)
    parameter OUT_EBITS = 8,
    parameter OUT_MBITS = 23,
    parameter SW = fp4_pkg::shift_port_bits(SHIFT_BITS)
) (
    input  logic                           clk,
    input  logic                           rst,
    input  logic [      A_EBITS+A_MBITS:0] a_left,
    input  logic                           valid_left,
    input  logic                           last_left,
    input  logic [      W_EBITS+W_MBITS:0] w_top,
    input  logic [                 SW-1:0] s_top,
    output logic [      A_EBITS+A_MBITS:0] a_right,
    output logic                           valid_right,
    output logic                           last_right,
    output logic [      W_EBITS+W_MBITS:0] w_down,
    output logic [                 SW-1:0] s_down,
    output logic                           out_valid,
    output logic [OUT_EBITS+OUT_MBITS:0]   out_data
);
  localparam PRODUCT_BITS = fp4_pkg::product_bits(A_EBITS, A_MBITS, W_EBITS, W_MBITS, SHIFT_BITS);

  logic signed [PRODUCT_BITS-1:0] product;
  logic signed [ACC_BITS-1:0] acc, sum;
  logic [ACC_BITS-1:0] magnitude;
  logic [OUT_EBITS+OUT_MBITS:0] converted;

  fp4_pe_product #(
      .A_EBITS(A_EBITS), .A_MBITS(A_MBITS), .W_EBITS(W_EBITS), .W_MBITS(W_MBITS), .SHIFT_BITS(SHIFT_BITS)
  ) multiply (.a(a_left), .w(w_top), .s(s_top), .p(product));

  assign sum = acc + ACC_BITS'(product);  // sign-extends: product is signed
  assign magnitude = sum[ACC_BITS-1] ? ACC_BITS'(-sum) : sum;

  fp4_round_to_float #(
      .MAG_BITS(ACC_BITS), .EXP_BITS(12), .EBITS(OUT_EBITS), .MBITS(OUT_MBITS),
      .BIAS((1 << (OUT_EBITS - 1)) - 1), .IEEE(1)
  ) convert (.sign(sum[ACC_BITS-1]), .mag(magnitude), .lsb_exp(12'(LSB_EXP)), .bits(converted));

  always_ff @(posedge clk) begin
    if (rst) begin
      {a_right, valid_right, last_right, w_down, s_down} <= '0;
      acc <= '0;
      out_valid <= 1'b0;
      out_data <= '0;
    end else begin
      {a_right, valid_right, last_right, w_down, s_down} <= {a_left, valid_left, last_left, w_top, s_top};
      out_valid <= valid_left && last_left;
      if (valid_left && last_left) begin
        acc <= '0;
        out_data <= converted;
      end else if (valid_left) begin
        acc <= sum;
      end
    end
  end
endmodule
