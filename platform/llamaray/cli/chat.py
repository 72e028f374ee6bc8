"""`llamaray chat`: talk to a served model from a terminal, as `vllm chat` does.

With a prompt it answers once; without one it reads prompts until end of input (Ctrl-D), keeping
the conversation as the dialog's history, so a follow-up question is asked in context. Answers
stream token by token through the Llama Stack chat route, in the model's own prompt format.
"""

from __future__ import annotations

import argparse
import sys

from llamaray.api.common import Dialog, Message, Role, SamplingParams, SamplingStrategy
from llamaray.api.inference import ChatCompletionRequest
from llamaray.cli.output import emit
from llamaray.client import LlamaRay


def default_model(lr: LlamaRay) -> str:
    """The first chat model served under its own id (not an alias or an adapter)."""
    for card in lr.openai.models().data:
        if card.kind == "chat" and not card.parent:
            return card.id
    raise SystemExit("the platform serves no chat model")


def chat(lr: LlamaRay, args: argparse.Namespace) -> int:
    model = args.model or default_model(lr)
    history: list[Message] = [Message(role=Role.system, content=args.system)] if args.system else []
    sampling = SamplingParams(
        temperature=args.temperature,
        strategy=SamplingStrategy.top_p if args.temperature > 0 else SamplingStrategy.greedy,
    )
    prompts = iter([" ".join(args.prompt)]) if args.prompt else _typed(model)
    for prompt in prompts:
        message = Message(role=Role.user, content=prompt)
        request = ChatCompletionRequest(
            model=model,
            dialog=Dialog(message=message, message_history=history or None),
            sampling_params=sampling,
            max_tokens=args.max_tokens,
            stream=not args.json,
        )
        if args.json:
            reply = lr.inference.chat_completion(request)
            emit(reply, True)
            answer = reply.content
        else:
            pieces = []
            for chunk in lr.inference.chat_completion(request):
                print(chunk.text_delta, end="", flush=True)
                pieces.append(chunk.text_delta)
            print()
            answer = "".join(pieces)
        history += [message, Message(role=Role.assistant, content=answer)]
    return 0


def _typed(model: str):
    """Prompts typed at the terminal (or piped in), until end of input; an empty line asks nothing."""
    print(f"chatting with {model} (Ctrl-D to end)", file=sys.stderr)
    marker = "> " if sys.stdin.isatty() else ""  # piped answers stay clean
    while True:
        try:
            prompt = input(marker)
        except EOFError:
            print(file=sys.stderr)
            return
        if prompt.strip():
            yield prompt


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser("chat", help="chat with a served model (streamed)", parents=[common])
    command.add_argument("prompt", nargs="*", help="ask once and exit (default: read prompts until Ctrl-D)")
    command.add_argument("-m", "--model", help="a served chat model or adapter id (default: the first chat model)")
    command.add_argument("--system", help="a system message to begin with")
    command.add_argument("--max-tokens", type=int, default=256)
    command.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    command.set_defaults(func=chat)
