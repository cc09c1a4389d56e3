// Bulk testbench of fp4_array (docs/spec.md 3.5): plays a whole input stream
// from a file, one edge per line, and records every out_valid pulse to a file,
// with no Python in the loop. Built by fp4sim.rtlsim.player under Verilator
// (--binary) or Icarus; the parameters are fp4_array's, passed through.
//
//   +stimulus=FILE  one line per edge t: "C S W A" in hex, C = {rst, in_valid, in_last},
//                   S = s_in, W = w_in, A = a_in (the port buses of spec 3.1)
//   +pulses=FILE    one line per pulse: "cycle pe bits" in decimal, pe = r*COLS + c,
//                   cycle = the edge at which out_valid[pe] is sampled high (spec 3.5)
module fp4_array_player #(
    parameter A_EBITS = 2,
    parameter A_MBITS = 1,
    parameter A_BIAS = 1,
    parameter W_EBITS = 2,
    parameter W_MBITS = 1,
    parameter W_BIAS = 1,
    parameter SHIFT_BITS = 2,
    parameter K_MAX = 65536,
    parameter ROWS = 4,
    parameter COLS = 4,
    parameter OUT_EBITS = 8,
    parameter OUT_MBITS = 23
);
  localparam NA = 1 + A_EBITS + A_MBITS;
  localparam NW = 1 + W_EBITS + W_MBITS;
  localparam SW = fp4_pkg::shift_port_bits(SHIFT_BITS);
  localparam OW = 1 + OUT_EBITS + OUT_MBITS;

`include "fp4_player_io.svh"
  logic rst, in_valid, in_last;
  logic [2:0] control;
  logic [ROWS*NA-1:0] a_in;
  logic [COLS*NW-1:0] w_in;
  logic [SW-1:0] s_in;
  logic [ROWS*COLS-1:0] out_valid;
  logic [ROWS*COLS*OW-1:0] out_data;

  fp4_array #(
      .A_EBITS(A_EBITS), .A_MBITS(A_MBITS), .A_BIAS(A_BIAS), .W_EBITS(W_EBITS), .W_MBITS(W_MBITS),
      .W_BIAS(W_BIAS), .SHIFT_BITS(SHIFT_BITS), .K_MAX(K_MAX), .ROWS(ROWS), .COLS(COLS),
      .OUT_EBITS(OUT_EBITS), .OUT_MBITS(OUT_MBITS)
  ) dut (
      .clk(clk), .rst(rst), .in_valid(in_valid), .in_last(in_last), .a_in(a_in), .w_in(w_in), .s_in(s_in),
      .out_valid(out_valid), .out_data(out_data)
  );

  assign {rst, in_valid, in_last} = control;

  integer pe;

  initial begin
    open_files();
    while ($fscanf(stimulus, "%h %h %h %h", control, s_in, w_in, a_in) == 4) begin
      clock_edge();
      // Two calls: Icarus 11's $isunknown of the concatenation reports X where there is none.
      if ($isunknown(out_valid) || $isunknown(out_data)) $fatal(1, "X/Z on the outputs at edge %0d", edges);
      if (|out_valid) begin
        for (pe = 0; pe < ROWS * COLS; pe = pe + 1) begin
          if (out_valid[pe]) begin
            $fwrite(pulses, "%0d %0d %0d\n", edges, pe, out_data[pe*OW+:OW]);
            count = count + 1;
          end
        end
      end
    end
    close_files("fp4_array_player");
  end
endmodule
