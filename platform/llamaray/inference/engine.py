"""The vLLM engine wrapper: one `AsyncLLM` per model, behind engine-neutral request types.

The gateway speaks `EngineRequest` / `EngineOutput` (plain dataclasses that pickle cheaply
across Ray), never vLLM's own types, so the services stay testable and vLLM upgrades touch
one module. Prompts are tokenized here, once, which is also where the context limit is known.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from llamaray.config import ModelConfig
from llamaray.errors import EngineUnavailableError, InvalidRequestError

logger = logging.getLogger(__name__)


@dataclass
class GenerationParams:
    max_tokens: int | None = None  # None: as many as the context leaves
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None  # how many top alternatives; 0 means the sampled token only
    ignore_eos: bool = False
    min_tokens: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    skip_special_tokens: bool = True


@dataclass
class EngineRequest:
    request_id: str
    prompt: str
    params: GenerationParams
    add_special_tokens: bool = True  # False when the prompt already starts with BOS
    prompt_param: str = "prompt"  # the request field to name when the prompt is too long
    stop_tokens: list[str] = field(default_factory=list)  # special tokens to stop at, by text


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class SequenceDelta:
    """New output of one sequence since the last delta (or all of it, when not streaming)."""

    index: int
    text: str
    num_tokens: int
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None  # "stop" | "length" | "abort"


@dataclass
class EngineOutput:
    prompt_tokens: int
    sequences: list[SequenceDelta]
    finished: bool


def engine_kwargs(model: ModelConfig) -> dict[str, Any]:
    """vLLM's engine arguments for a model of the deployment config."""
    kwargs: dict[str, Any] = dict(
        model=model.path,
        served_model_name=model.model_id,
        dtype=model.dtype,
        tensor_parallel_size=model.tensor_parallel_size,
        pipeline_parallel_size=model.pipeline_parallel_size,
        max_model_len=model.max_model_len,
        gpu_memory_utilization=model.gpu_memory_utilization,
        enforce_eager=model.enforce_eager,
        disable_log_stats=False,
    )
    if model.accelerator == "gpu" and model.world_size > 1:
        kwargs["distributed_executor_backend"] = "ray"  # uses the replica's placement group
    kwargs.update(model.engine_kwargs)
    return kwargs


class VLLMEngine:
    """An `AsyncLLM` built from a `ModelConfig`."""

    def __init__(self, model: ModelConfig) -> None:
        for key, value in model.engine_env().items():
            os.environ.setdefault(key, value)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model = model
        kwargs = engine_kwargs(model)
        started = time.monotonic()
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self.tokenizer = self.engine.get_tokenizer()
        self.max_model_len = self.engine.model_config.max_model_len
        logger.warning("engine for %s ready in %.1fs (max_model_len=%d)", model.model_id, time.monotonic() - started, self.max_model_len)

    def _sampling_params(self, request: EngineRequest, prompt_tokens: int, final_only: bool = False):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = request.params
        room = self.max_model_len - prompt_tokens
        if room <= 0:
            raise InvalidRequestError(
                f"the prompt is {prompt_tokens} tokens long; this model's context is {self.max_model_len} tokens",
                request.prompt_param,
            )
        if p.max_tokens is not None and p.max_tokens > room:
            raise InvalidRequestError(
                f"max_tokens={p.max_tokens} does not fit: the prompt takes {prompt_tokens} of the "
                f"model's {self.max_model_len} tokens, leaving {room}",
                "max_tokens",
            )
        stop_ids = list(p.stop_token_ids)
        for token in request.stop_tokens:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                stop_ids.append(token_id)
        return SamplingParams(
            n=p.n,
            max_tokens=p.max_tokens or room,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k > 0 else 0,
            seed=p.seed,
            stop=p.stop or None,
            stop_token_ids=stop_ids or None,
            logprobs=p.logprobs,
            ignore_eos=p.ignore_eos,
            min_tokens=p.min_tokens,
            presence_penalty=p.presence_penalty,
            frequency_penalty=p.frequency_penalty,
            skip_special_tokens=p.skip_special_tokens,
            output_kind=RequestOutputKind.FINAL_ONLY if final_only else RequestOutputKind.DELTA,
        )

    def _prompt(self, request: EngineRequest):
        from vllm.inputs import TokensPrompt

        ids = self.tokenizer(request.prompt, add_special_tokens=request.add_special_tokens).input_ids
        return TokensPrompt(prompt_token_ids=ids), len(ids)

    async def stream(self, request: EngineRequest, interval_s: float = 0.0) -> AsyncIterator[EngineOutput]:
        """Deltas as the engine produces them; cancelling the iteration aborts the request.

        With `interval_s`, waits that long after each delta before taking the next: meanwhile
        vLLM merges what the engine produces into one delta, so the stream sends fewer messages.
        """
        prompt, prompt_tokens = self._prompt(request)
        from vllm.exceptions import VLLMClientError

        try:
            sampling = self._sampling_params(request, prompt_tokens)
        except (ValueError, VLLMClientError) as exc:  # vLLM's own checks of the request
            raise InvalidRequestError(str(exc), getattr(exc, "parameter", None)) from None
        if self.engine.errored:
            raise EngineUnavailableError(f"the engine of {self.model.model_id} is down; its replica is being replaced")
        try:
            async for out in self.engine.generate(prompt, sampling, request.request_id):
                yield EngineOutput(
                    prompt_tokens=prompt_tokens,
                    sequences=[self._delta(o) for o in out.outputs],
                    finished=out.finished,
                )
                if interval_s and not out.finished:
                    await asyncio.sleep(interval_s)
        except (asyncio.CancelledError, GeneratorExit):
            await self.engine.abort(request.request_id)
            raise
        except (ValueError, VLLMClientError) as exc:  # refused when the engine validated the request
            raise InvalidRequestError(str(exc), getattr(exc, "parameter", None)) from None
        except Exception as exc:
            from vllm.v1.engine.exceptions import EngineDeadError

            if isinstance(exc, EngineDeadError) or self.engine.errored:
                raise EngineUnavailableError(f"the engine of {self.model.model_id} died: {exc}") from None
            raise

    async def generate(self, request: EngineRequest) -> EngineOutput:
        """The whole answer at once: every sequence's deltas joined."""
        merged: dict[int, SequenceDelta] = {}
        prompt_tokens = 0
        async for out in self.stream(request):
            prompt_tokens = out.prompt_tokens
            for seq in out.sequences:
                acc = merged.setdefault(seq.index, SequenceDelta(seq.index, "", 0, [] if seq.logprobs is not None else None))
                acc.text += seq.text
                acc.num_tokens += seq.num_tokens
                if seq.logprobs is not None and acc.logprobs is not None:
                    acc.logprobs.extend(seq.logprobs)
                acc.finish_reason = seq.finish_reason or acc.finish_reason
        return EngineOutput(prompt_tokens, [merged[i] for i in sorted(merged)], True)

    def _delta(self, output) -> SequenceDelta:
        logprobs = None
        if output.logprobs is not None:
            logprobs = []
            for token_id, alternatives in zip(output.token_ids, output.logprobs):
                chosen = alternatives[token_id]
                top = sorted(alternatives.values(), key=lambda lp: lp.rank or 0)
                logprobs.append(
                    TokenLogprob(
                        token=chosen.decoded_token or "",
                        logprob=float(chosen.logprob),
                        top=[(lp.decoded_token or "", float(lp.logprob)) for lp in top],
                    )
                )
        return SequenceDelta(
            index=output.index,
            text=output.text,
            num_tokens=len(output.token_ids),
            logprobs=logprobs,
            finish_reason=output.finish_reason,
        )

    async def check_health(self) -> None:
        await self.engine.check_health()

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model.model_id,
            "pid": os.getpid(),
            "running_requests": self.engine.output_processor.get_num_unfinished_requests(),
            "max_model_len": self.max_model_len,
            "healthy": not self.engine.errored,
        }

    def shutdown(self) -> None:
        self.engine.shutdown()
