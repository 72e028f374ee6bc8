"""The `llamaray` command."""

from __future__ import annotations

import argparse
import sys


def _build_tiny(args: argparse.Namespace) -> int:
    from llamaray.models.tiny import build_tiny_models, tiny_models_present

    if tiny_models_present(args.out_dir) and not args.force:
        print(f"tiny models already in {args.out_dir} (use --force to rebuild)")
        return 0
    for kind, path in build_tiny_models(args.out_dir).items():
        print(f"built {kind} {'adapter' if kind in ('agent', 'guard') else 'model'}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llamaray", description="Llama Stack on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="model artefacts").add_subparsers(dest="models_command", required=True)
    tiny = models.add_parser(
        "build-tiny",
        help="build the tiny chat and reward models offline, deterministically, and teach the agent and guard adapters",
    )
    tiny.add_argument("out_dir", help="directory to write tiny-llama-chat/ and tiny-llama-reward/ into")
    tiny.add_argument("--force", action="store_true", help="rebuild even if present")
    tiny.set_defaults(func=_build_tiny)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
