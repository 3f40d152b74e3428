"""Workloads: the trace format, generators, public-trace converters and the open-loop replayer."""
