"""The RTL flow from Python: filelists, the cocotb runner and array driver that tb/ and ``fp4sim cosim`` share, and
the bulk player (a whole stream through the simulator at once).

Needs the source tree (rtl/, tb/) and cocotb (``pip install 'fp4sim[rtl]'``); importing this package does not.
"""
