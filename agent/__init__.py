"""edgefarm agent: runs on the board, builds engines locally and measures them.

Python 3.8+ and only grpcio, protobuf, numpy plus whichever runtime the board has:
nothing here may import the controller side (controller/, compressors/, torch, pandas).
"""
from edgefarm import __version__

__all__ = ["PROTOCOL_VERSION", "__version__"]
# edgefarm.v1.MINOR: a minor adds fields old agents would silently ignore (v1.1: input shapes,
# input data and fidelity; v1.2: the separate profiling pass), so the controller refuses such jobs for an
# older agent.
PROTOCOL_VERSION = "edgefarm.v1.2"
