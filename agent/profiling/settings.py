"""How long a profiling pass runs: capped, so its overhead and the profile's size stay bounded."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ITERATIONS = 100
MAX_ITERATIONS = 1000
DROPPED_ITERATIONS = 5   # first profiled runs left out: arena growth, cold caches


@dataclass(frozen=True)
class ProfileSettings:
    iterations: int = DEFAULT_ITERATIONS
    dropped: int = DROPPED_ITERATIONS
    benchmark_model_path: str = ""      # LiteRT: a benchmark_model binary on this board, for per-op time

    @staticmethod
    def from_spec(iterations: int, benchmark_model_path: str) -> ProfileSettings:
        wanted = iterations if iterations > 0 else DEFAULT_ITERATIONS
        return ProfileSettings(min(wanted, MAX_ITERATIONS), DROPPED_ITERATIONS, benchmark_model_path)
