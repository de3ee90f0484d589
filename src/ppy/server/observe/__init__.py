"""Observability: Prometheus metrics, per-worker sharing, console statistics and the console assets."""
