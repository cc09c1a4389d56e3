// FP4 (any small signed format with subnormals, no Inf/NaN) operand decoder
// (docs/spec.md 2.1; golden twin:
// fp4sim.hw.fp4_operand_decode.fp4_operand_decode).
// value = (-1)^sign * significand * 2^exp_m1 * 2^(1 - BIAS - MBITS):
// normals get the implicit 1, subnormals (exponent field 0) take E = 1.
module fp4_operand_decode #(
    parameter EBITS = 2,
    parameter MBITS = 1
) (
    input  logic [EBITS+MBITS:0] code,
    output logic                 sign,
    output logic [      MBITS:0] significand,
    output logic [  EBITS-1:0]   exp_m1        // E - 1, E = max(field, 1)
);
  logic [EBITS-1:0] field;
  logic normal;
  assign sign = code[EBITS+MBITS];
  assign field = code[EBITS+MBITS-1-:EBITS];
  assign normal = field != '0;
  assign exp_m1 = normal ? field - 1'b1 : '0;
  generate
    if (MBITS > 0) begin : g_mantissa
      assign significand = {normal, code[MBITS-1:0]};
    end else begin : g_no_mantissa
      assign significand = normal;
    end
  endgenerate
endmodule
