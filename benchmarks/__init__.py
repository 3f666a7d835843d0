"""Benchmarks, run by `streams bench`: ratios against baselines measured in the same run."""
