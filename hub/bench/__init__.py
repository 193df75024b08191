"""Benchmarks and the real-shaped workloads they (and the pipeline tests) run on."""
