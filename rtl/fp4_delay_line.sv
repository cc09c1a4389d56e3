// DEPTH-stage shift register with synchronous reset: out is in from DEPTH
// rising edges ago (docs/spec.md 3.2, the array's skew lines). DEPTH >= 1.
// Golden twin: fp4sim.hw.fp4_delay_line.fp4_delay_line.
module fp4_delay_line #(
    parameter WIDTH = 1,
    parameter DEPTH = 1
) (
    input  logic             clk,
    input  logic             rst,
    input  logic [WIDTH-1:0] in,
    output logic [WIDTH-1:0] out
);
  logic [DEPTH*WIDTH-1:0] stages;  // stage d at [d*WIDTH +: WIDTH]
  generate
    if (DEPTH == 1) begin : g_one
      always_ff @(posedge clk) stages <= rst ? '0 : in;
    end else begin : g_many
      always_ff @(posedge clk) stages <= rst ? '0 : {stages[(DEPTH-1)*WIDTH-1:0], in};
    end
  endgenerate
  assign out = stages[(DEPTH-1)*WIDTH+:WIDTH];
endmodule
