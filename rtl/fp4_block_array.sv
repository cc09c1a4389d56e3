// ROWS x COLS output-stationary block-scaled FP4 dot-product array, MXFP4 or NVFP4 (docs/spec.md 8;
// golden twin: fp4sim.hw.fp4_block_array.fp4_block_array). Each edge carries one 16-element group
// per row (from the left, skewed one edge per row) and per column (from the top, skewed one edge
// per column), each with its block scale. A PE holds its output's accumulator; a finished one is
// ORed onto its column's drain bus for one edge and converted to FP32 by the column's shared
// converter at the bottom edge: out_valid[c] with out_row[c] = r at edge n + r + c + 2 for a tile
// whose in_last is sampled at edge n. Tiles must end at least ROWS edges apart (spec 8.1).
module fp4_block_array #(
    parameter BLOCK_FORMAT = 0,
    parameter ACC_MODE = 0,
    parameter FRAC_BITS = 35,
    parameter FUSED_GROUPS = 4,
    parameter K_MAX = 65536,
    parameter ROWS = 4,
    parameter COLS = 4,
    parameter RB = (ROWS > 1) ? $clog2(ROWS) : 1
) (
    input  logic                 clk,
    input  logic                 rst,
    input  logic                 in_valid,
    input  logic                 in_last,
    input  logic [ ROWS*64-1:0]  a_in,
    input  logic [  ROWS*8-1:0]  a_scale,
    input  logic [ COLS*64-1:0]  w_in,
    input  logic [  COLS*8-1:0]  w_scale,
    output logic [    COLS-1:0]  out_valid,
    output logic [ COLS*RB-1:0]  out_row,
    output logic [ COLS*32-1:0]  out_data
);
  localparam RW = (ACC_MODE == 0) ? fp4_pkg::block_acc_bits(BLOCK_FORMAT, K_MAX) : 32;
  localparam TERM_LSB = fp4_pkg::block_term_lsb(BLOCK_FORMAT);
  localparam AH = 64 + 8 + 2;  // activation bus: {a, scale, valid, last}
  localparam WV = 64 + 8;  // weight bus: {w, scale}

  // Horizontal bus h[r][c] enters PE (r, c); vertical bus v[r][c] enters PE (r, c).
  // Slots c = COLS and r = ROWS are what the right column and bottom row pass on: nothing reads them.
  /* verilator lint_off UNUSEDSIGNAL */
  logic [ROWS*(COLS+1)*AH-1:0] h;
  logic [(ROWS+1)*COLS*WV-1:0] v;
  /* verilator lint_on UNUSEDSIGNAL */
  logic [ROWS*COLS-1:0] done;
  logic [ROWS*COLS*(RW+1)-1:0] drain;

  genvar r, c;
  generate
    for (r = 0; r < ROWS; r = r + 1) begin : g_row_skew
      if (r == 0) begin : g_direct
        assign h[0+:AH] = {a_in[0+:64], a_scale[0+:8], in_valid, in_last};
      end else begin : g_delayed
        fp4_delay_line #(.WIDTH(AH), .DEPTH(r)) skew (
            .clk(clk), .rst(rst), .in({a_in[r*64+:64], a_scale[r*8+:8], in_valid, in_last}),
            .out(h[(r*(COLS+1))*AH+:AH])
        );
      end
    end
    for (c = 0; c < COLS; c = c + 1) begin : g_col_skew
      if (c == 0) begin : g_direct
        assign v[0+:WV] = {w_in[0+:64], w_scale[0+:8]};
      end else begin : g_delayed
        fp4_delay_line #(.WIDTH(WV), .DEPTH(c)) skew (
            .clk(clk), .rst(rst), .in({w_in[c*64+:64], w_scale[c*8+:8]}), .out(v[c*WV+:WV])
        );
      end
    end
    for (r = 0; r < ROWS; r = r + 1) begin : g_rows
      for (c = 0; c < COLS; c = c + 1) begin : g_cols
        localparam HI = r * (COLS + 1) + c;  // this PE's horizontal input; HI + 1 its output
        localparam VI = r * COLS + c;  // this PE's vertical input; VI + COLS its output
        fp4_block_pe #(
            .BLOCK_FORMAT(BLOCK_FORMAT), .ACC_MODE(ACC_MODE), .FRAC_BITS(FRAC_BITS),
            .FUSED_GROUPS(FUSED_GROUPS), .K_MAX(K_MAX)
        ) pe (
            .clk(clk),
            .rst(rst),
            .a_left(h[HI*AH+10+:64]),
            .a_scale_left(h[HI*AH+2+:8]),
            .valid_left(h[HI*AH+1]),
            .last_left(h[HI*AH]),
            .w_top(v[VI*WV+8+:64]),
            .w_scale_top(v[VI*WV+:8]),
            .a_right(h[(HI+1)*AH+10+:64]),
            .a_scale_right(h[(HI+1)*AH+2+:8]),
            .valid_right(h[(HI+1)*AH+1]),
            .last_right(h[(HI+1)*AH]),
            .w_down(v[(VI+COLS)*WV+8+:64]),
            .w_scale_down(v[(VI+COLS)*WV+:8]),
            .done(done[VI]),
            .drain(drain[VI*(RW+1)+:RW+1])
        );
      end
    end
    // The drain: one bus and one shared FP32 converter per column, at the bottom edge (spec 8.6).
    for (c = 0; c < COLS; c = c + 1) begin : g_drain
      logic [RW:0] bus;  // {nan, accumulator} of the PE whose done is high, else 0
      logic any;
      logic [RB-1:0] row;
      logic [31:0] converted;
      integer i;
      always @* begin
        bus = '0;
        any = 1'b0;
        row = '0;
        for (i = 0; i < ROWS; i = i + 1) begin
          bus = bus | drain[(i*COLS+c)*(RW+1)+:RW+1];
          if (done[i*COLS+c]) begin
            any = 1'b1;
            row = RB'(i);
          end
        end
      end
      if (ACC_MODE == 0) begin : g_round
        logic [RW-1:0] magnitude;
        assign magnitude = bus[RW-1] ? -bus[RW-1:0] : bus[RW-1:0];
        fp4_round_to_float #(
            .MAG_BITS(RW), .EXP_BITS(12), .EBITS(8), .MBITS(23), .BIAS(127), .IEEE(1)
        ) convert (
            .sign(bus[RW-1]), .mag(magnitude), .lsb_exp(12'(TERM_LSB)),
            .bits(converted)
        );
      end else begin : g_pass
        assign converted = bus[31:0];  // the PE's fused adds already truncated c to FP32
      end
      always_ff @(posedge clk) begin
        if (rst) begin
          out_valid[c] <= 1'b0;
          out_row[c*RB+:RB] <= '0;
          out_data[c*32+:32] <= '0;
        end else begin
          out_valid[c] <= any;
          if (any) begin
            out_row[c*RB+:RB] <= row;
            out_data[c*32+:32] <= bus[RW] ? 32'h7FC00000 : converted;  // NaN scale: the canonical quiet NaN
          end
        end
      end
    end
  endgenerate
endmodule
