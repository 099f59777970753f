"""Nightly regression runs: baseline, verdicts on raw samples, confirmation re-runs, JUnit."""
