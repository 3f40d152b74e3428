"""Benchmarks: policy sweeps, live comparisons, overhead and simulator fidelity."""
