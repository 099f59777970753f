"""edgefarm tune: a measured, hardware-aware search for the best variant of a model on each board.

space (the candidates, from the recipe registry and the board's routes) → search (host check, then
successive halving on the board through the one executor) → hwmp (hardware-aware mixed precision from
per-layer profiles) → front (Pareto front, recommendation, deployment card) → page (HTML)."""
