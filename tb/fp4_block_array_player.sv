// Bulk testbench of fp4_block_array (docs/spec.md 8): plays a whole input stream
// from a file, one edge per line, and records every out_valid pulse to a file,
// with no Python in the loop. Built by fp4sim.rtlsim.player under Verilator
// (--binary) or Icarus, like fp4_array_player.sv; the parameters are
// fp4_block_array's, passed through.
//
//   +stimulus=FILE  one line per edge t: "C AS A WS W" in hex, C = {rst, in_valid, in_last},
//                   AS = a_scale, A = a_in, WS = w_scale, W = w_in (the port buses of spec 8.1)
//   +pulses=FILE    one line per pulse: "cycle pe bits" in decimal, pe = out_row[c]*COLS + c,
//                   cycle = the edge at which out_valid[c] is sampled high (spec 8.7)
module fp4_block_array_player #(
    parameter BLOCK_FORMAT = 0,
    parameter ACC_MODE = 0,
    parameter FRAC_BITS = 35,
    parameter FUSED_GROUPS = 4,
    parameter K_MAX = 65536,
    parameter ROWS = 4,
    parameter COLS = 4
);
  localparam RB = (ROWS > 1) ? $clog2(ROWS) : 1;

`include "fp4_player_io.svh"
  logic rst, in_valid, in_last;
  logic [2:0] control;
  logic [ROWS*64-1:0] a_in;
  logic [ROWS*8-1:0] a_scale;
  logic [COLS*64-1:0] w_in;
  logic [COLS*8-1:0] w_scale;
  logic [COLS-1:0] out_valid;
  logic [COLS*RB-1:0] out_row;
  logic [COLS*32-1:0] out_data;

  fp4_block_array #(
      .BLOCK_FORMAT(BLOCK_FORMAT), .ACC_MODE(ACC_MODE), .FRAC_BITS(FRAC_BITS), .FUSED_GROUPS(FUSED_GROUPS),
      .K_MAX(K_MAX), .ROWS(ROWS), .COLS(COLS)
  ) dut (
      .clk(clk), .rst(rst), .in_valid(in_valid), .in_last(in_last), .a_in(a_in), .a_scale(a_scale),
      .w_in(w_in), .w_scale(w_scale), .out_valid(out_valid), .out_row(out_row), .out_data(out_data)
  );

  assign {rst, in_valid, in_last} = control;

  integer c;

  initial begin
    open_files();
    while ($fscanf(stimulus, "%h %h %h %h %h", control, a_scale, a_in, w_scale, w_in) == 5) begin
      clock_edge();
      if ($isunknown(out_valid) || $isunknown(out_row) || $isunknown(out_data))
        $fatal(1, "X/Z on the outputs at edge %0d", edges);
      if (|out_valid) begin
        for (c = 0; c < COLS; c = c + 1) begin
          if (out_valid[c]) begin
            $fwrite(pulses, "%0d %0d %0d\n", edges, {{(32 - RB) {1'b0}}, out_row[c*RB+:RB]} * COLS + c,
                    out_data[c*32+:32]);
            count = count + 1;
          end
        end
      end
    end
    close_files("fp4_block_array_player");
  end
endmodule
