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
from llamaray.engines.protocol import LONG_TEXT_CHARS, EngineOutput, EngineRequest
from llamaray.engines.vllm_args import vllm_engine_args
from llamaray.engines.vllm_requests import lora_request, sampling_params, sequence_delta, tokens_prompt
from llamaray.errors import EngineUnavailableError, InvalidRequestError

logger = logging.getLogger(__name__)


def _ray_metrics() -> list[Any] | None:
    """vLLM's own engine metrics (`vllm:num_requests_running`, `vllm:time_to_first_token_seconds`,
    the KV cache use...) through Ray's metrics agent, beside the platform's in the dashboard and
    at each node's `/metrics`, as Ray Serve LLM exports them; outside Ray, vLLM's defaults."""
    import ray

    if not ray.is_initialized():
        return None
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    return [RayPrometheusStatLogger]


class VLLMEngine:
    """A `StreamingEngine` over an `AsyncLLM` built from a `ModelConfig`."""

    def __init__(self, model: ModelConfig) -> None:
        args = vllm_engine_args(model)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model = model
        started = time.monotonic()
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args), stat_loggers=_ray_metrics())
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
        async for out in self._outputs(request, final_only=False):
            yield out
            if interval_s and not out.finished:
                await asyncio.sleep(interval_s)

    async def generate(self, request: EngineRequest) -> EngineOutput:
        """The whole answer at once: vLLM's `FINAL_ONLY` output, one message from the engine per
        request, as `vllm serve` answers a non-streaming request (no deltas merged here)."""
        final = None
        async for out in self._outputs(request, final_only=True):  # to its end: leaving early would abort it
            final = out
        if final is None or not final.finished:
            raise EngineUnavailableError(f"the engine of {self.model.model_id} ended {request.request_id} unfinished")
        return final

    async def _outputs(self, request: EngineRequest, final_only: bool) -> AsyncIterator[EngineOutput]:
        from vllm.exceptions import VLLMClientError

        if len(request.prompt) > LONG_TEXT_CHARS:
            prompt, prompt_tokens = await asyncio.to_thread(tokens_prompt, self.tokenizer, request)
        else:
            prompt, prompt_tokens = tokens_prompt(self.tokenizer, request)
        sampling = sampling_params(request, prompt_tokens, self.max_model_len, self.tokenizer, final_only)
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
