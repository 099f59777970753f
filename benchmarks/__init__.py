"""edgefarm benchmarks: `make bench` (python -m benchmarks).

Each figure is a ratio against a reference measured in the same run, written to
benchmarks/out/results.json as {id, name, value, unit, reference, goal}.
Ids are stable: later benchmarks add to the same file.
"""
