"""`OfflineVLLMEngine`: vLLM's `LLMEngine` in the caller's own process, stepped by one thread.

Batch work (a Ray Data actor's `map_batches`) wants what the offline `LLM.generate` has: the
engine core in-process (no process to spawn, so a faster start; no IPC each step, which on a
small machine costs the cores the model needs) and full batches. It also wants several batches
in one engine at once, which `LLM.generate` cannot do: so concurrent `generate` calls hand
their requests to the stepping thread, which adds them between steps and resolves each one's
future when it finishes. Requests, checks and outputs are built by the functions every vLLM
engine shares (`vllm_requests`), so a batch answer is the same as a served one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from typing import Any, Callable

from llamaray.config import ModelConfig
from llamaray.engines.protocol import EngineOutput, EngineRequest
from llamaray.engines.vllm_args import Runner, vllm_engine_args
from llamaray.engines.vllm_requests import lora_request, sampling_params, sequence_delta, tokens_prompts
from llamaray.errors import InvalidRequestError

logger = logging.getLogger(__name__)


class EngineStepper:
    """One thread that builds a `vllm.LLM` and steps its `LLMEngine`; any event loop may hand it
    requests and await them.

    The engine is built on the thread that steps it because torch's OpenMP thread team belongs to
    the thread that first runs a parallel region: built on the actor's main thread and stepped on
    another, the process held two teams, more OpenMP threads than cores, where libgomp stops
    spinning its idle threads; measured, the stepping thread ran at 68% of a core and its helper
    at 18% (85% and 66% once built here), where `LLM.generate` in one thread keeps both busy.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        """`build()` makes the `vllm.LLM` on the stepping thread itself, which returns once it
        is ready (or raises what building raised)."""
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._wake = threading.Event()
        built: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, args=(build, built), name="vllm-offline-steps", daemon=True).start()
        self.llm = built.get()
        if isinstance(self.llm, BaseException):
            raise self.llm

    async def run(self, request_id: str, prompt: Any, params: Any, lora: Any = None) -> Any:
        """The request's final output (a `RequestOutput` or a `PoolingRequestOutput`)."""
        (out,) = await self.run_many([(request_id, prompt, params, lora)])
        return out

    async def run_many(self, requests: list[tuple[str, Any, Any, Any]]) -> list[Any]:
        """The final outputs of (request id, prompt, params, LoRA) requests, handed over at once:
        the stepping thread admits them together, between two steps."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        for (request_id, prompt, params, lora), future in zip(requests, futures):
            self._inbox.put((request_id, prompt, params, lora, (loop, future)))
        self._wake.set()
        return list(await asyncio.gather(*futures))

    @property
    def running(self) -> int:
        return len(self._waiting)

    def _run(self, build: Callable[[], Any], built: queue.SimpleQueue) -> None:
        try:
            llm = build()
        except BaseException as exc:
            built.put(exc)
            return
        self.engine = llm.llm_engine
        built.put(llm)
        while True:
            if not self.engine.has_unfinished_requests() and self._inbox.empty():
                self._wake.wait()
                self._wake.clear()
            self._admit()
            try:
                outputs = self.engine.step() if self.engine.has_unfinished_requests() else []
            except Exception as exc:  # the engine is broken: every waiting request fails with it
                self._settle([(request_id, None, exc) for request_id in list(self._waiting)])
                continue
            self._settle([(out.request_id, out, None) for out in outputs if out.finished])

    def _admit(self) -> None:
        refused = []
        while not self._inbox.empty():
            request_id, prompt, params, lora, waiter = self._inbox.get()
            self._waiting[request_id] = waiter
            try:
                self.engine.add_request(request_id, prompt, params, lora_request=lora)
            except Exception as exc:  # vLLM's own checks of the request
                refused.append((request_id, None, InvalidRequestError(str(exc), getattr(exc, "parameter", None))))
        self._settle(refused)

    def _settle(self, results: list[tuple[str, Any, BaseException | None]]) -> None:
        """Resolves finished requests with one callback per event loop: a step often finishes
        hundreds at once, and each wake-up of a loop costs its thread the GIL."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, BaseException | None]]] = {}
        for request_id, out, error in results:
            loop, future = self._waiting.pop(request_id)
            by_loop.setdefault(loop, []).append((future, out, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, out, error in settled:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(out)


def offline_llm(model: ModelConfig, runner: Runner = "generate"):
    """`vllm.LLM` with its engine core in this process."""
    args = vllm_engine_args(model, runner, in_process=True)
    from vllm import LLM

    return LLM(**args)


class OfflineVLLMEngine:
    """An `Engine` (whole answers, no streaming) over an in-process `LLMEngine`."""

    def __init__(self, model: ModelConfig) -> None:
        started = time.monotonic()
        self.model = model
        self.stepper = EngineStepper(lambda: offline_llm(model))
        self.llm = self.stepper.llm
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        logger.warning("offline engine for %s ready in %.1fs", model.model_id, time.monotonic() - started)

    async def generate(self, request: EngineRequest) -> EngineOutput:
        (output,) = await self.generate_many([request])
        return output

    async def generate_many(self, requests: list[EngineRequest]) -> list[EngineOutput]:
        """A batch's answers: its prompts tokenised in one call and handed to the engine at once,
        as `LLM.generate` does, rather than a coroutine, a tokenizer call and a wake-up per row.
        (On the tiny model the batch benchmark saw no change either way: the steps dominate.)
        One bad request fails the batch, naming its field."""
        prompts = tokens_prompts(self.tokenizer, requests)
        handed = [
            (
                request.request_id,
                prompt,
                sampling_params(request, length, self.max_model_len, self.tokenizer, final_only=True),
                lora_request(request.adapter),
            )
            for request, (prompt, length) in zip(requests, prompts)
        ]
        outs = await self.stepper.run_many(handed)
        return [
            EngineOutput(length, [sequence_delta(o) for o in out.outputs], True)
            for (_, length), out in zip(prompts, outs)
        ]

    async def check_health(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model.model_id,
            "pid": os.getpid(),
            "running_requests": self.stepper.running,
            "healthy": True,
        }

    def shutdown(self) -> None:
        pass
