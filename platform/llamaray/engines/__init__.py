"""Model engines: the Protocols a deployment or a batch actor hosts, and the vLLM and reward engines."""
