// One 16-element E2M1 group times its two block scales (docs/spec.md 8.2, 8.3; golden twin:
// fp4sim.hw.fp4_block_term.fp4_block_term): the exact group sum P of the sixteen products
// (units of 2^-2), V = P * significand_a * significand_w, shift = shift_a + shift_w, the
// alignment exponent E = exponent_a + exponent_w, and nan if either scale is NaN.
// BLOCK_FORMAT 0: MXFP4 (E8M0 scales), 1: NVFP4 (unsigned E4M3 scales).
module fp4_block_term #(
    parameter BLOCK_FORMAT = 0,
    parameter VB = fp4_pkg::block_value_bits(BLOCK_FORMAT),
    parameter HB = fp4_pkg::block_shift_bits(BLOCK_FORMAT)
) (
    input  logic        [63:0] a,  // element j at [4j +: 4]
    input  logic        [63:0] w,
    input  logic        [ 7:0] a_scale,
    input  logic        [ 7:0] w_scale,
    output logic               nan,
    output logic signed [VB-1:0] value,
    output logic        [HB-1:0] shift,
    output logic signed [   9:0] exponent
);
  // Twice an E2M1 value: an integer in -12..12 (-0 gives 0).
  function automatic signed [4:0] e2m1_twice(input logic [3:0] code);
    logic [4:0] magnitude;
    case (code[2:0])
      3'd0: magnitude = 5'd0;
      3'd1: magnitude = 5'd1;
      3'd2: magnitude = 5'd2;
      3'd3: magnitude = 5'd3;
      3'd4: magnitude = 5'd4;
      3'd5: magnitude = 5'd6;
      3'd6: magnitude = 5'd8;
      default: magnitude = 5'd12;
    endcase
    e2m1_twice = code[3] ? -magnitude : magnitude;
  endfunction

  // A scale code as {nan, significand[3:0], shift[7:0], exponent[9:0]} (spec 8.2).
  function automatic [22:0] decode_scale(input logic [7:0] code, input integer nvfp4);
    logic [9:0] field;
    field = {6'd0, code[6:3]};
    if (nvfp4 == 0) decode_scale = (code == 8'hFF) ? {1'b1, 4'd0, 8'd0, 10'h382} : {1'b0, 4'd1, code, {2'd0, code} - 10'd127};
    else if (code[7] || code[6:0] == 7'h7F) decode_scale = {1'b1, 4'd0, 8'd0, 10'h382};  // sign bit or NaN: -126
    else if (code[6:3] != 0) decode_scale = {1'b0, {1'b1, code[2:0]}, {4'd0, code[6:3]} - 8'd1, field - 10'd7};
    else if (code[2:0] != 0) decode_scale = {1'b0, {1'b0, code[2:0]}, 8'd0, 10'h3FA};  // subnormal: -6
    else decode_scale = {1'b0, 4'd0, 8'd0, 10'h382};  // zero scale: -126
  endfunction

  logic [22:0] sa, sw;
  integer j, sum;

  always @* begin
    sa = decode_scale(a_scale, BLOCK_FORMAT);
    sw = decode_scale(w_scale, BLOCK_FORMAT);
    sum = 0;
    for (j = 0; j < 16; j = j + 1) sum = sum + e2m1_twice(a[4*j+:4]) * e2m1_twice(w[4*j+:4]);
    nan = sa[22] | sw[22];
    value = VB'(sum * $signed({28'd0, sa[21:18]}) * $signed({28'd0, sw[21:18]}));
    shift = HB'({1'b0, sa[17:10]} + {1'b0, sw[17:10]});
    exponent = sa[9:0] + sw[9:0];
  end
endmodule
