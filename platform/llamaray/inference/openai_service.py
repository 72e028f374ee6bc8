"""The OpenAI-compatible API (`/v1`) over the same engines and prompt format as Llama Stack's."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator

from llamaray.api import openai as oai
from llamaray.api.common import Message, Role, ToolCall, ToolDefinition
from llamaray.engines.protocol import EngineOutput, EngineRequest, GenerationParams, SequenceDelta, TokenLogprob
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.inference.chat_format import prefill_text
from llamaray.inference.forced_output import ForcedCallStream, ForcedOutput, forced_calls, forced_output
from llamaray.inference.registry import ModelRegistry
from llamaray.inference.service import chat_engine_request
from llamaray.inference.tool_parser import parse_tool_calls
from llamaray.inference.tool_stream import ToolCallStream


def _params(request: oai.SamplingFields, max_tokens: int | None, logprobs: int | None) -> GenerationParams:
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=max(request.top_k, 0),
        n=request.n,
        seed=request.seed,
        stop=request.stop_list(),
        logprobs=logprobs,
        ignore_eos=request.ignore_eos,
        min_tokens=request.min_tokens,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


def _message_text(message: oai.ChatMessage, i: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    for j, part in enumerate(message.content):
        if part.type != "text":
            raise InvalidRequestError(
                f"{part.type!r} content parts are not supported: the models served here read text only",
                f"messages[{i}].content[{j}].type",
            )
    return "".join(part.text or "" for part in message.content)


def to_llama_messages(messages: list[oai.ChatMessage]) -> list[Message]:
    converted = []
    for i, message in enumerate(messages):
        calls = []
        for call in message.tool_calls or []:
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except (json.JSONDecodeError, RecursionError):
                arguments = None
            if not isinstance(arguments, dict):
                raise InvalidRequestError("tool call arguments must be a JSON object", f"messages[{i}].tool_calls")
            calls.append(ToolCall(tool_name=call.function.name, arguments=arguments))
        # OpenAI's `developer` is the system prompt of its newer models.
        role = Role.system if message.role == "developer" else Role(message.role)
        converted.append(Message(role=role, content=_message_text(message, i), tool_calls=calls))
    return converted


def to_llama_tools(request: oai.ChatCompletionRequest) -> list[ToolDefinition]:
    if not request.tools or request.tool_choice == "none":
        return []
    return [
        ToolDefinition(tool_name=t.function.name, description=t.function.description, parameters=t.function.parameters)
        for t in request.tools
    ]


def _tool_calls_out(calls: list[ToolCall]) -> list[oai.ToolCallOut]:
    return [
        oai.ToolCallOut(
            id=f"call_{uuid.uuid4().hex[:24]}",
            function=oai.FunctionCall(name=c.tool_name, arguments=json.dumps(c.arguments)),
        )
        for c in calls
    ]


def _chat_logprobs(logprobs: list[TokenLogprob] | None, top: int) -> oai.ChoiceLogprobs | None:
    if logprobs is None:
        return None
    return oai.ChoiceLogprobs(
        content=[
            oai.TokenLogprobOut(
                token=lp.token,
                logprob=lp.logprob,
                bytes=list(lp.token.encode()),
                top_logprobs=[oai.TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, v in lp.top[:top]],
            )
            for lp in logprobs
        ]
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> oai.Usage:
    return oai.Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def shown_path(path: str, data_dir: Path | None, storage: Path | None = None) -> str:
    """A model's `root` as `/v1/models` shows it: a hub id as is, a checkpoint by its path in the
    shared storage or the data dir, any other directory by its name; never where the host keeps
    it, nor an object store's options (an endpoint)."""
    if "://" in path:
        return path.partition("?")[0]
    local = Path(path)
    if not local.is_absolute():
        return path
    for base in (storage, data_dir):
        if base is not None and local.is_relative_to(base):
            return str(local.relative_to(base))
    return local.name


class OpenAIService:
    def __init__(
        self,
        registry: ModelRegistry,
        embedding_models: list[str] = (),
        data_dir: Path | None = None,
        storage: Path | None = None,
    ) -> None:
        self.registry = registry
        self.embedding_models = list(embedding_models)
        self.data_dir = data_dir
        self.storage = storage  # a shared directory (`storage_path`), where checkpoints are

    async def models(self) -> oai.ModelList:
        """Every id a route accepts: each chat and reward model under its id and its aliases
        (an alias names its model as `parent`), each adapter (its base model as `parent`, its
        directory as `root`, as vLLM lists LoRAs), each fine-tuned model deployed on its own
        (the same way), and the embedding model."""
        cards = [
            oai.ModelCard(
                id=model_id,
                root=shown_path(m.config.path, self.data_dir, self.storage),
                parent=None if model_id == m.config.model_id else m.config.model_id,
                max_model_len=m.config.max_model_len,
                kind=m.config.kind,
            )
            for m in self.registry.models
            for model_id in m.config.ids
        ]
        adapters = self.registry.adapters
        for adapter in await adapters.list_adapters() if adapters else []:
            base = self.registry.get(adapter.base_model).config
            cards.append(
                oai.ModelCard(
                    id=adapter.adapter_id,
                    created=adapter.created,
                    root=shown_path(adapter.path, self.data_dir, self.storage),
                    parent=adapter.base_model,
                    max_model_len=base.max_model_len,
                )
            )
        if self.registry.deployed:
            cards += [
                card.model_copy(update={"root": shown_path(card.root or "", self.data_dir, self.storage)})
                for card in await self.registry.deployed.cards()
            ]
        cards += [oai.ModelCard(id=model_id, kind="embedding") for model_id in self.embedding_models]
        return oai.ModelList(data=cards)

    async def model(self, model_id: str) -> oai.ModelCard:
        for card in (await self.models()).data:
            if card.id == model_id:
                return card
        raise NotFoundError(f"model {model_id!r} does not exist", "model")

    # -- chat ------------------------------------------------------------------------------

    async def chat_completions(self, request: oai.ChatCompletionRequest) -> oai.ChatCompletion | AsyncIterator[str]:
        model = await self.registry.chat(request.model)
        engine = model.client
        messages = to_llama_messages(request.messages)
        forced = forced_output(request)
        max_tokens = request.max_completion_tokens or request.max_tokens
        top = request.top_logprobs or 0
        params = replace(
            _params(request, max_tokens, top if request.logprobs else None),
            json_schema=forced.json_schema,
            json_object=forced.json_object,
        )
        engine_request = chat_engine_request(
            messages,
            to_llama_tools(request),
            params,
            "messages",
            request.continue_final_message,
            model.prompt_format,
            tools_param=None if forced.tool_calls else "tools",  # a forced call is shaped by its schema
        )
        prefill = prefill_text(messages) if request.continue_final_message and request.echo else ""
        if request.stream:
            return self._stream_chat(engine, engine_request, request, prefill, top, forced)
        out = await engine.generate(engine_request)
        choices = []
        for seq in out.sequences:
            if forced.tool_calls:
                content, calls = None, forced_calls(forced, seq.text)
            else:
                parsed = parse_tool_calls(prefill + seq.text)
                content, calls = parsed.content, parsed.tool_calls
            choices.append(
                oai.ChatChoice(
                    index=seq.index,
                    message=oai.AssistantMessage(content=content, tool_calls=_tool_calls_out(calls)),
                    finish_reason=_chat_finish(seq, calls, forced),
                    logprobs=_chat_logprobs(seq.logprobs, top),
                )
            )
        usage = _usage(out.prompt_tokens, sum(s.num_tokens for s in out.sequences))
        return oai.ChatCompletion(id=engine_request.request_id, model=request.model, choices=choices, usage=usage)

    async def _stream_chat(
        self,
        engine,
        engine_request: EngineRequest,
        request: oai.ChatCompletionRequest,
        prefill: str,
        top: int,
        forced: ForcedOutput,
    ) -> AsyncIterator[str]:
        def chunk(index: int, delta: oai.DeltaMessage, finish: str | None = None, logprobs=None) -> str:
            choice = oai.ChatChunkChoice(index=index, delta=delta, finish_reason=finish, logprobs=logprobs)
            return oai.ChatCompletionChunk(
                id=engine_request.request_id, model=request.model, choices=[choice]
            ).model_dump_json(exclude_none=True)

        streams = {i: ForcedCallStream(forced) if forced.tool_calls else ToolCallStream() for i in range(request.n)}
        for i in range(request.n):
            first = streams[i].feed(prefill) if prefill else ""
            yield chunk(i, oai.DeltaMessage(role="assistant", content=first))
        prompt_tokens = completion_tokens = 0
        async for out in engine.stream(engine_request):
            prompt_tokens = out.prompt_tokens
            for seq in out.sequences:
                completion_tokens += seq.num_tokens
                text = streams[seq.index].feed(seq.text)
                logprobs = _chat_logprobs(seq.logprobs, top)
                if text or logprobs:
                    yield chunk(seq.index, oai.DeltaMessage(content=text), logprobs=logprobs)
                if seq.finish_reason is not None:
                    rest, calls = streams[seq.index].finish()
                    if rest:
                        yield chunk(seq.index, oai.DeltaMessage(content=rest))
                    if calls:
                        deltas = [
                            oai.DeltaToolCall(index=k, id=c.id, type="function", function=c.function)
                            for k, c in enumerate(_tool_calls_out(calls))
                        ]
                        yield chunk(seq.index, oai.DeltaMessage(tool_calls=deltas))
                    yield chunk(seq.index, oai.DeltaMessage(), _chat_finish(seq, calls, forced))
        if request.stream_options and request.stream_options.include_usage:
            yield oai.ChatCompletionChunk(
                id=engine_request.request_id,
                model=request.model,
                choices=[],
                usage=_usage(prompt_tokens, completion_tokens),
            ).model_dump_json(exclude_none=True)

    # -- completions -----------------------------------------------------------------------

    async def completions(self, request: oai.CompletionRequest) -> oai.Completion | AsyncIterator[str]:
        engine = (await self.registry.chat(request.model)).client
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            raise InvalidRequestError("prompt must not be empty", "prompt")
        params = _params(request, request.max_tokens, request.logprobs)
        engine_requests = [
            EngineRequest(f"cmpl-{uuid.uuid4().hex}", prompt, replace(params), prompt_param="prompt")
            for prompt in prompts
        ]
        if request.stream:
            return self._stream_completions(engine, engine_requests, prompts, request)
        outputs = await asyncio.gather(*(engine.generate(r) for r in engine_requests))
        choices = []
        for p, (prompt, out) in enumerate(zip(prompts, outputs)):
            for seq in out.sequences:
                text = (prompt if request.echo else "") + seq.text
                choices.append(
                    oai.CompletionChoice(
                        index=p * request.n + seq.index,
                        text=text,
                        finish_reason=_finish(seq),
                        logprobs=_completion_logprobs(seq),
                    )
                )
        usage = _usage(sum(o.prompt_tokens for o in outputs), sum(s.num_tokens for o in outputs for s in o.sequences))
        return oai.Completion(id=engine_requests[0].request_id, model=request.model, choices=choices, usage=usage)

    async def _stream_completions(
        self, engine, engine_requests: list[EngineRequest], prompts: list[str], request: oai.CompletionRequest
    ) -> AsyncIterator[str]:
        stream_id = engine_requests[0].request_id
        queue: asyncio.Queue[tuple[int, EngineOutput | None]] = asyncio.Queue()

        async def pump(p: int, engine_request: EngineRequest) -> None:
            try:
                async for out in engine.stream(engine_request):
                    await queue.put((p, out))
            finally:
                await queue.put((p, None))

        tasks = [asyncio.create_task(pump(p, r)) for p, r in enumerate(engine_requests)]
        prompt_tokens = completion_tokens = 0
        try:
            if request.echo:
                for p, prompt in enumerate(prompts):
                    for i in range(request.n):
                        choice = oai.CompletionChoice(index=p * request.n + i, text=prompt, finish_reason=None)
                        yield oai.Completion(id=stream_id, model=request.model, choices=[choice]).model_dump_json(
                            exclude_none=True
                        )
            open_streams = len(tasks)
            while open_streams:
                p, out = await queue.get()
                if out is None:
                    open_streams -= 1
                    continue
                prompt_tokens += out.prompt_tokens if out.finished else 0
                choices = []
                for seq in out.sequences:
                    completion_tokens += seq.num_tokens
                    choices.append(
                        oai.CompletionChoice(
                            index=p * request.n + seq.index,
                            text=seq.text,
                            finish_reason=_finish(seq),
                            logprobs=_completion_logprobs(seq),
                        )
                    )
                yield oai.Completion(id=stream_id, model=request.model, choices=choices).model_dump_json(
                    exclude_none=True
                )
            for task in tasks:
                task.result()  # re-raise an engine failure
            if request.stream_options and request.stream_options.include_usage:
                usage = _usage(prompt_tokens, completion_tokens)
                yield oai.Completion(id=stream_id, model=request.model, choices=[], usage=usage).model_dump_json(
                    exclude_none=True
                )
        finally:
            for task in tasks:
                task.cancel()


def _chat_finish(seq: SequenceDelta, calls: list[ToolCall], forced: ForcedOutput) -> str | None:
    """`tool_calls` when the answer calls tools, but `stop` for a named `tool_choice`, as OpenAI
    and vLLM answer it (a forced answer cut short has no calls: `length`)."""
    if calls and forced.named_tool is None:
        return "tool_calls"
    return _finish(seq)


def _finish(seq: SequenceDelta) -> str | None:
    if seq.finish_reason is None:
        return None
    return "length" if seq.finish_reason == "length" else "stop"


def _completion_logprobs(seq: SequenceDelta) -> oai.CompletionLogprobs | None:
    if seq.logprobs is None:
        return None
    return oai.CompletionLogprobs(
        tokens=[lp.token for lp in seq.logprobs],
        token_logprobs=[lp.logprob for lp in seq.logprobs],
        top_logprobs=[dict(lp.top) for lp in seq.logprobs],
    )
