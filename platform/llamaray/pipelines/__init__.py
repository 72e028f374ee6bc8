"""Ray Data pipelines: batch completion and synthetic data generation, inline when small and as Ray Jobs when large."""
