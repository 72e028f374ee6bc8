"""The `llamaray` command: start the platform, and talk to a running one.

Every command but `serve` and `models build-tiny` calls a platform over HTTP through
`llamaray.client` (`--url`, or `LLAMARAY_URL`; `--api-key`, or `LLAMARAY_API_KEY`), prints
tables a person reads, or JSON with `--json`. A refusal prints the platform's own message (and
the field it names) and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from llamaray.cli import chat, jobs, resources
from llamaray.client import LlamaRay
from llamaray.errors import LlamarayError


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the platform (default: $LLAMARAY_URL or http://127.0.0.1:8000)")
    common.add_argument("--api-key", help="sent as `Authorization: Bearer` (default: $LLAMARAY_API_KEY)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    main_parser = argparse.ArgumentParser(prog="llamaray", description="Llama Stack on Ray.")
    commands = main_parser.add_subparsers(dest="command", required=True)
    resources.add_commands(commands, common)
    chat.add_commands(commands, common)
    jobs.add_commands(commands, common)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "local", False):
        return args.func(args)
    lr = LlamaRay(args.url, args.api_key)
    try:
        return args.func(lr, args)
    except LlamarayError as exc:
        where = f" ({exc.param})" if exc.param else ""
        print(f"error {exc.status_code}{where}: {exc.message}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"error: cannot reach the platform at {lr.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llamaray jobs logs JOB | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit stays quiet
        return 0
    finally:
        lr.close()


if __name__ == "__main__":
    sys.exit(main())
