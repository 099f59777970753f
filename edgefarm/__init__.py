"""edgefarm: a hardware-in-the-loop benchmarking farm for edge AI.

The distribution installs one import name, ``edgefarm``, mapped from the repository's role folders:
``edgefarm.agent`` (agent/, runs on the boards), ``edgefarm.protos`` (protos/, the wire contract),
``edgefarm.controller`` (controller/) and ``edgefarm.compressors`` (compressors/).

This module is the one version string of the whole distribution (pyproject.toml reads it); it must
stay importable on the boards' Python 3.8 and import nothing.
"""
__version__ = "0.2.0"
