"""Datasets: the registry and its readers (Ray Data pipelines join here later)."""
