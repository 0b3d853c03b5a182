"""Benchmarks: ``python -m bench.<name>``. Each prints its table and ratios measured in the same run."""
