// ROWS x COLS output-stationary systolic FP4 MAC array (docs/spec.md 3;
// golden twin: fp4sim.hw.fp4_array.fp4_array). Activations enter from the
// left, skewed by one edge per row; weights and their per-input-channel shifts
// enter from the top, skewed by one edge per column. PE (r, c) pulses
// out_valid[r*COLS + c] at edge n + r + c + 1 for a tile whose in_last is
// sampled at edge n.
module fp4_array #(
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
    parameter OUT_MBITS = 23,
    parameter NA = 1 + A_EBITS + A_MBITS,
    parameter NW = 1 + W_EBITS + W_MBITS,
    parameter SW = fp4_pkg::shift_port_bits(SHIFT_BITS),
    parameter OW = 1 + OUT_EBITS + OUT_MBITS
) (
    input  logic                      clk,
    input  logic                      rst,
    input  logic                      in_valid,
    input  logic                      in_last,
    input  logic [       ROWS*NA-1:0] a_in,
    input  logic [       COLS*NW-1:0] w_in,
    input  logic [            SW-1:0] s_in,
    output logic [     ROWS*COLS-1:0] out_valid,
    output logic [ROWS*COLS*OW-1:0]   out_data
);
  // Widths of spec 2.2-2.3
  localparam ACC_BITS = fp4_pkg::acc_bits(A_EBITS, A_MBITS, W_EBITS, W_MBITS, SHIFT_BITS, K_MAX);
  localparam LSB_EXP = fp4_pkg::lsb_exp(A_BIAS, A_MBITS, W_BIAS, W_MBITS, SHIFT_BITS);
  localparam AH = NA + 2;  // activation bus: {a, valid, last}
  localparam WV = NW + SW;  // weight bus: {w, s}

  // Horizontal bus h[r][c] enters PE (r, c); vertical bus v[r][c] enters PE (r, c).
  // Slots c = COLS and r = ROWS are what the right column and bottom row pass on: nothing reads them.
  /* verilator lint_off UNUSEDSIGNAL */
  logic [ROWS*(COLS+1)*AH-1:0] h;
  logic [(ROWS+1)*COLS*WV-1:0] v;
  /* verilator lint_on UNUSEDSIGNAL */

  genvar r, c;
  generate
    for (r = 0; r < ROWS; r = r + 1) begin : g_row_skew
      if (r == 0) begin : g_direct
        assign h[0+:AH] = {a_in[0+:NA], in_valid, in_last};
      end else begin : g_delayed
        fp4_delay_line #(.WIDTH(AH), .DEPTH(r)) skew (
            .clk(clk), .rst(rst), .in({a_in[r*NA+:NA], in_valid, in_last}), .out(h[(r*(COLS+1))*AH+:AH])
        );
      end
    end
    for (c = 0; c < COLS; c = c + 1) begin : g_col_skew
      if (c == 0) begin : g_direct
        assign v[0+:WV] = {w_in[0+:NW], s_in};
      end else begin : g_delayed
        fp4_delay_line #(.WIDTH(WV), .DEPTH(c)) skew (
            .clk(clk), .rst(rst), .in({w_in[c*NW+:NW], s_in}), .out(v[c*WV+:WV])
        );
      end
    end
    for (r = 0; r < ROWS; r = r + 1) begin : g_rows
      for (c = 0; c < COLS; c = c + 1) begin : g_cols
        localparam HI = r * (COLS + 1) + c;  // this PE's horizontal input; HI + 1 its output
        localparam VI = r * COLS + c;  // this PE's vertical input; VI + COLS its output
        fp4_pe #(
            .A_EBITS(A_EBITS), .A_MBITS(A_MBITS), .W_EBITS(W_EBITS), .W_MBITS(W_MBITS),
            .SHIFT_BITS(SHIFT_BITS), .ACC_BITS(ACC_BITS), .LSB_EXP(LSB_EXP),
            .OUT_EBITS(OUT_EBITS), .OUT_MBITS(OUT_MBITS)
        ) pe (
            .clk(clk),
            .rst(rst),
            .a_left(h[HI*AH+2+:NA]),
            .valid_left(h[HI*AH+1]),
            .last_left(h[HI*AH]),
            .w_top(v[VI*WV+SW+:NW]),
            .s_top(v[VI*WV+:SW]),
            .a_right(h[(HI+1)*AH+2+:NA]),
            .valid_right(h[(HI+1)*AH+1]),
            .last_right(h[(HI+1)*AH]),
            .w_down(v[(VI+COLS)*WV+SW+:NW]),
            .s_down(v[(VI+COLS)*WV+:SW]),
            .out_valid(out_valid[r*COLS+c]),
            .out_data(out_data[(r*COLS+c)*OW+:OW])
        );
      end
    end
  endgenerate
endmodule
