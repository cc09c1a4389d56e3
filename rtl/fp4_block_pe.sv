// One PE of the block-scaled output-stationary array (docs/spec.md 8.4-8.6; golden twin:
// fp4sim.hw.fp4_block_pe.fp4_block_pe): passes a group and its scale right and down through
// registers, adds each valid group's term (fp4_block_term) to its accumulator (ACC_MODE 0: exact
// fixed point; 1: aligned_truncate's running FP32 sum with a buffer of F - 1 terms and
// fp4_block_fused_add), and after a tile's last group holds the result for one edge (done) on
// its drain port, which the array ORs into its column's converter; then it restarts at zero.
module fp4_block_pe #(
    parameter BLOCK_FORMAT = 0,
    parameter ACC_MODE = 0,
    parameter FRAC_BITS = 35,
    parameter FUSED_GROUPS = 4,
    parameter K_MAX = 65536,
    parameter RW = (ACC_MODE == 0) ? fp4_pkg::block_acc_bits(BLOCK_FORMAT, K_MAX) : 32
) (
    input  logic          clk,
    input  logic          rst,
    input  logic [  63:0] a_left,
    input  logic [   7:0] a_scale_left,
    input  logic          valid_left,
    input  logic          last_left,
    input  logic [  63:0] w_top,
    input  logic [   7:0] w_scale_top,
    output logic [  63:0] a_right,
    output logic [   7:0] a_scale_right,
    output logic          valid_right,
    output logic          last_right,
    output logic [  63:0] w_down,
    output logic [   7:0] w_scale_down,
    output logic          done,
    output logic [RW:0]   drain  // {nan, accumulator} while done, else 0
);
  localparam VB = fp4_pkg::block_value_bits(BLOCK_FORMAT);
  localparam HB = fp4_pkg::block_shift_bits(BLOCK_FORMAT);

  /* verilator lint_off UNUSEDSIGNAL */  // the exact mode reads no exponent, the aligned mode no shift
  logic term_nan;
  logic signed [VB-1:0] value;
  logic [HB-1:0] shift;
  logic signed [9:0] exponent;
  /* verilator lint_on UNUSEDSIGNAL */
  logic [RW-1:0] acc, base;
  logic nan;

  fp4_block_term #(.BLOCK_FORMAT(BLOCK_FORMAT)) term (
      .a(a_left), .w(w_top), .a_scale(a_scale_left), .w_scale(w_scale_top),
      .nan(term_nan), .value(value), .shift(shift), .exponent(exponent)
  );

  assign base = done ? '0 : acc;  // a finished tile's sum stays one edge, for the drain
  assign drain = done ? {nan, acc} : '0;

  always_ff @(posedge clk) begin
    if (rst) begin
      {a_right, a_scale_right, valid_right, last_right, w_down, w_scale_down} <= '0;
      nan  <= 1'b0;
      done <= 1'b0;
    end else begin
      {a_right, a_scale_right, valid_right, last_right, w_down, w_scale_down} <=
          {a_left, a_scale_left, valid_left, last_left, w_top, w_scale_top};
      nan  <= (done ? 1'b0 : nan) | (valid_left & term_nan);
      done <= valid_left & last_left;
    end
  end

  generate
    if (ACC_MODE == 0) begin : g_exact
      always_ff @(posedge clk) begin
        if (rst) acc <= '0;
        else if (valid_left) acc <= base + (RW'(value) << shift);  // RW'(value) sign-extends: value is signed
        else acc <= base;
      end
    end else begin : g_aligned
      localparam F = FUSED_GROUPS;
      localparam NB = (F > 1) ? F - 1 : 1;  // buffered terms (one unused slot when F = 1)
      localparam CB = (F > 1) ? $clog2(F) : 1;
      logic [NB*VB-1:0] buffer_value;
      logic [NB*10-1:0] buffer_exponent;
      logic [CB-1:0] fill;
      logic [F*VB-1:0] slot_value;
      logic [F*10-1:0] slot_exponent;
      logic [F-1:0] slot_mask;
      logic [31:0] fused;
      logic fuse;

      assign fuse = last_left || (32'(fill) == F - 1);
      if (F == 1) begin : g_single
        assign slot_value = value;
        assign slot_exponent = exponent;
        assign slot_mask = 1'b1;
        /* verilator lint_off UNUSEDSIGNAL */
        logic unused_buffer;
        assign unused_buffer = ^{buffer_value, buffer_exponent};
        /* verilator lint_on UNUSEDSIGNAL */
      end else begin : g_buffered
        integer i;
        assign slot_value = {value, buffer_value};
        assign slot_exponent = {exponent, buffer_exponent};
        always_comb for (i = 0; i < F; i = i + 1) slot_mask[i] = (i == F - 1) || (i < 32'(fill));
      end

      fp4_block_fused_add #(
          .BLOCK_FORMAT(BLOCK_FORMAT), .FRAC_BITS(FRAC_BITS), .TERMS(F)
      ) add (.c(base), .values(slot_value), .exponents(slot_exponent), .mask(slot_mask), .sum(fused));

      always_ff @(posedge clk) begin
        if (rst) begin
          acc <= '0;
          fill <= '0;
          buffer_value <= '0;
          buffer_exponent <= '0;
        end else if (valid_left && fuse) begin
          acc  <= fused;
          fill <= '0;
        end else if (valid_left) begin
          acc <= base;
          buffer_value[32'(fill)*VB+:VB] <= value;
          buffer_exponent[32'(fill)*10+:10] <= exponent;
          fill <= fill + 1'b1;
        end else begin
          acc <= base;
        end
      end
    end
  endgenerate
endmodule
