"""Model artefacts the platform builds itself (see tiny.py)."""
