"""Running planned jobs: the farm runner (one executor for every run), the single-board run and its preparation."""
