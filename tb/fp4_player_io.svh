// What the bulk testbenches (tb/fp4_array_player.sv, tb/fp4_block_array_player.sv) share, included in the
// module body: the clock, the two files named by +stimulus=FILE and +pulses=FILE, and the edge and pulse counts.
// Each player's initial block calls open_files, then per stimulus line drives its ports and calls clock_edge,
// records the pulses it samples (count), and ends with close_files.
  logic clk = 1'b0;
  string stimulus_path, pulses_path;
  integer stimulus, pulses, edges, count;

  task open_files;
    if (!$value$plusargs("stimulus=%s", stimulus_path) || !$value$plusargs("pulses=%s", pulses_path))
      $fatal(1, "usage: +stimulus=FILE +pulses=FILE");
    stimulus = $fopen(stimulus_path, "r");
    pulses = $fopen(pulses_path, "w");
    if (stimulus == 0 || pulses == 0) $fatal(1, "cannot open %s or %s", stimulus_path, pulses_path);
    edges = 0;
    count = 0;
  endtask

  // Rising edge `edges`: the registers take the line's inputs; then `edges` counts what that edge would
  // sample, as the cocotb drivers read it.
  task clock_edge;
    #1 clk = 1'b1;
    #1 clk = 1'b0;
    edges = edges + 1;
  endtask

  // Closes both files and prints "<name>: E edges, P pulses", the line fp4sim.rtlsim.player checks.
  task close_files(input string name);
    $fclose(stimulus);
    $fclose(pulses);
    $display("%s: %0d edges, %0d pulses", name, edges, count);
    $finish;
  endtask
