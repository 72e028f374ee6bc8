"""`VLLMEngine`: one model's vLLM `AsyncLLM`, the engine a Serve replica hosts.

`AsyncLLM` runs the engine core in a process of its own and watches its health, which a
replica needs (Serve replaces one whose engine died); it streams deltas as they come.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, AsyncIterator

from llamaray.config import ModelConfig
from llamaray.engines.protocol import LONG_TEXT_CHARS, EngineOutput, EngineRequest, SequenceDelta
from llamaray.engines.vllm_args import vllm_engine_args
from llamaray.engines.vllm_requests import lora_request, sampling_params, sequence_delta, tokens_prompt
from llamaray.errors import EngineUnavailableError, InvalidRequestError

logger = logging.getLogger(__name__)


class VLLMEngine:
    """A `StreamingEngine` over an `AsyncLLM` built from a `ModelConfig`."""

    def __init__(self, model: ModelConfig) -> None:
        args = vllm_engine_args(model)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model = model
        started = time.monotonic()
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        self.tokenizer = self.engine.get_tokenizer()
        self.max_model_len = self.engine.model_config.max_model_len
        self.adapters: dict[str, None] = {}  # the adapters this replica has served, most recent last
        logger.warning(
            "engine for %s ready in %.1fs (max_model_len=%d)",
            model.model_id,
            time.monotonic() - started,
            self.max_model_len,
        )

    async def stream(self, request: EngineRequest, interval_s: float = 0.0) -> AsyncIterator[EngineOutput]:
        """Deltas as the engine produces them; cancelling the iteration aborts the request.

        With `interval_s`, waits that long after each delta before taking the next: meanwhile
        vLLM merges what the engine produces into one delta, so the stream sends fewer messages.
        """
        from vllm.exceptions import VLLMClientError

        if len(request.prompt) > LONG_TEXT_CHARS:
            prompt, prompt_tokens = await asyncio.to_thread(tokens_prompt, self.tokenizer, request)
        else:
            prompt, prompt_tokens = tokens_prompt(self.tokenizer, request)
        sampling = sampling_params(request, prompt_tokens, self.max_model_len, self.tokenizer)
        if self.engine.errored:
            raise EngineUnavailableError(f"the engine of {self.model.model_id} is down; its replica is being replaced")
        if request.adapter is not None:
            self.adapters.pop(request.adapter.name, None)
            self.adapters[request.adapter.name] = None
        try:
            adapter = lora_request(request.adapter)
            async for out in self.engine.generate(prompt, sampling, request.request_id, lora_request=adapter):
                yield EngineOutput(
                    prompt_tokens=prompt_tokens,
                    sequences=[sequence_delta(o) for o in out.outputs],
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
                acc = merged.setdefault(
                    seq.index, SequenceDelta(seq.index, "", 0, [] if seq.logprobs is not None else None)
                )
                acc.text += seq.text
                acc.num_tokens += seq.num_tokens
                if seq.logprobs is not None and acc.logprobs is not None:
                    acc.logprobs.extend(seq.logprobs)
                acc.finish_reason = seq.finish_reason or acc.finish_reason
        return EngineOutput(prompt_tokens, [merged[i] for i in sorted(merged)], True)

    async def check_health(self) -> None:
        await self.engine.check_health()

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model.model_id,
            "pid": os.getpid(),
            "running_requests": self.engine.output_processor.get_num_unfinished_requests(),
            "max_model_len": self.max_model_len,
            "healthy": not self.engine.errored,
            "adapters": list(self.adapters)[-16:],
        }

    def shutdown(self) -> None:
        self.engine.shutdown()
