"""Benchmarks behind ``vid3d bench``: vid3d against PyTorch on the present device."""
