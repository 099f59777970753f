"""edgefarm controller: compresses models, ships them to board agents, stores and reports results."""
from agent import __version__  # one version for the whole distribution: the wheel's, the agent's

__all__ = ["__version__"]
