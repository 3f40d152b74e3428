"""The early-exit model zoo: networks, bundled-data training, checkpoints, the torch executor and the profiler.

Importing this package is cheap; submodules import torch.
"""
