"""edgefarm controller: compresses models, ships them to board agents, stores and reports results."""
from edgefarm import __version__  # one version for the whole distribution

__all__ = ["__version__"]
