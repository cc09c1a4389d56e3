"""End to end: a quantized model streamed through the simulator (``simulate``), real tiles through the RTL
(``cosim``), and the main job on the bundled model (``demo``)."""

# Defaults of the end-to-end commands, read by their functions and by the CLI (kept here: importing them is cheap).
COSIM_TILES = 2  # output tiles a cosim run streams through the RTL
FORWARD_TOKENS = 256  # the window of `fp4sim cosim --forward`
FORWARD_ARRAY = 16  # its array: FORWARD_ARRAY x FORWARD_ARRAY PEs
DEMO_DIR = "demo"  # where fp4sim demo writes the export and the report
