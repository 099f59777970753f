"""edgefarm controller: compresses models, ships them to board agents, stores and reports results."""
__version__ = "0.1.0"
