"""Llama 3.1 prompt format and tool calls, the vLLM engine wrapper, and the inference services."""
