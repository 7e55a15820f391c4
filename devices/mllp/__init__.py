"""MLLP (HL7 v2 over TCP): a pure framing codec (``framing``), a threaded listener
(``listener``), a blocking client (``client``), the ACK cache (``dedup``) and the return
channel for enhanced-mode application ACKs (``returns``).

Import the submodules you need; this package imports nothing, so code that only needs
the codec does not pull in sockets or threads.
"""
