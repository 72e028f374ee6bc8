"""Datasets: the registry, the readers of `content_url`, and the output that jobs register."""
