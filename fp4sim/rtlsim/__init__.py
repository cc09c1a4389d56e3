"""The RTL flow from Python: filelists, the cocotb runner and the array driver that tb/ and ``fp4sim cosim`` share.

Needs the source tree (rtl/, tb/) and cocotb (``pip install 'fp4sim[rtl]'``); importing this package does not.
"""
