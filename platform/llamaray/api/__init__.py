"""The Llama Stack API (draft of 2024-07-11): pydantic types and one Protocol per API.

This package imports no ray, torch or vllm, so clients and tests can use the types alone.
"""
