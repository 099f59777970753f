"""edgefarm agent: runs on the board, builds engines locally and measures them.

Python 3.8+ and only grpcio, protobuf, numpy plus whichever runtime the board has:
nothing here may import the controller side (controller/, compressors/, torch, pandas).
"""
__version__ = "0.1.0"
PROTOCOL_VERSION = "edgefarm.v1"
