"""llamaray: the Llama Stack API served on Ray.

The public surface is small: `build_app` (the Serve application builder), `PlatformConfig`,
and the API types under `llamaray.api`. Everything else is internal.
"""

__version__ = "0.1.0"


def build_app(args: dict):
    """The Serve application for a deployment config's `args` (see deployments/*.yaml)."""
    from llamaray.serve.app import build_app as _build_app

    return _build_app(args)
