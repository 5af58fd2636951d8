"""Executors: turn a build manifest into perf rows, on this host (`local`) or across a cluster."""
