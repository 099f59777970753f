"""What the user writes: devices.yaml, matrix files and the YAML reader that keeps line numbers for errors."""
