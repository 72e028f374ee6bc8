"""A reward model: one scalar per conversation, read in the model's own chat format.

vLLM's pooling runner serves sequence-classification checkpoints (Llama-architecture reward
models among them) with continuous batching; a model whose architecture vLLM lacks runs on
transformers instead. Either way the score is the raw logit of the model's single label, the
value a Bradley-Terry reward model is trained to produce (the `sigmoid` filter maps it to a
probability later), so scores from both backends compare.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

from llamaray.config import ModelConfig
from llamaray.engines.protocol import Conversation
from llamaray.engines.vllm_args import set_engine_environment, vllm_engine_args
from llamaray.errors import InvalidRequestError

logger = logging.getLogger(__name__)


class RewardBackend(Protocol):
    async def score(self, token_ids: list[list[int]]) -> list[float]: ...

    async def check_health(self) -> None: ...

    def shutdown(self) -> None: ...


class RewardEngine:
    """A `ScoringEngine`: formats conversations (the generation last) with the reward model's
    chat template and scores them."""

    def __init__(self, model: ModelConfig, offline: bool = False) -> None:
        """`offline`: vLLM's engine core in this process (a batch job's actor), not a process
        of its own (a Serve replica, where `AsyncLLM` also watches the engine's health)."""
        set_engine_environment(model)
        started = time.monotonic()
        self.model = model
        self.backend, self.tokenizer, self.max_model_len = _load(model, offline)
        logger.warning(
            "reward model %s ready on %s in %.1fs",
            model.model_id,
            type(self.backend).__name__,
            time.monotonic() - started,
        )

    def encode(self, conversation: Conversation, param: str = "prompt_generations") -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        else:  # a plain classifier: the turns joined
            ids = self.tokenizer("\n\n".join(turn["content"] for turn in conversation)).input_ids
        if len(ids) > self.max_model_len:
            raise InvalidRequestError(
                f"a dialog with its generation is {len(ids)} tokens; "
                f"the reward model reads at most {self.max_model_len}",
                param,
            )
        return ids

    async def score(self, conversations: list[Conversation]) -> list[float]:
        return await self.backend.score([self.encode(c) for c in conversations])

    def stats(self) -> dict[str, Any]:
        return {"model": self.model.model_id, "kind": "reward", "backend": type(self.backend).__name__, "healthy": True}

    async def check_health(self) -> None:
        """A dead vLLM engine raises here, which marks a Serve replica unhealthy."""
        await self.backend.check_health()

    def shutdown(self) -> None:
        self.backend.shutdown()


def _raw_logit():
    from vllm.pooling_params import PoolingParams

    return PoolingParams(task="classify", use_activation=False)


class VLLMRewardBackend:
    def __init__(self, engine) -> None:
        self.engine = engine

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        self.engine.shutdown()

    async def score(self, token_ids: list[list[int]]) -> list[float]:
        return list(await asyncio.gather(*(self._one(ids) for ids in token_ids)))

    async def _one(self, ids: list[int]) -> float:
        from vllm.inputs import TokensPrompt

        final = None
        async for final in self.engine.encode(  # noqa: B007 (the last output is the score)
            TokensPrompt(prompt_token_ids=ids), _raw_logit(), f"reward-{uuid.uuid4().hex}"
        ):
            pass
        return float(final.outputs.data.reshape(-1)[0])


class OfflineVLLMRewardBackend:
    def __init__(self, llm) -> None:
        from llamaray.engines.offline_vllm import EngineStepper

        self.llm = llm
        self.stepper = EngineStepper(llm.llm_engine)

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        pass

    async def score(self, token_ids: list[list[int]]) -> list[float]:
        from vllm.inputs import TokensPrompt

        outs = await asyncio.gather(
            *(
                self.stepper.run(f"reward-{uuid.uuid4().hex}", TokensPrompt(prompt_token_ids=ids), _raw_logit())
                for ids in token_ids
            )
        )
        return [float(out.outputs.data.reshape(-1)[0]) for out in outs]


class TransformersRewardBackend:
    """One forward pass per call, in a thread so the replica keeps answering."""

    def __init__(self, model, pad_token_id: int) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.lock = asyncio.Lock()

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        pass

    async def score(self, token_ids: list[list[int]]) -> list[float]:
        async with self.lock:
            return await asyncio.to_thread(self._forward, token_ids)

    def _forward(self, token_ids: list[list[int]]) -> list[float]:
        import torch

        width = max(len(ids) for ids in token_ids)
        # Left padding: the model's pooled position is then always the last one.
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(ids)) + ids for ids in token_ids])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in token_ids])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self.model.device
        input_ids, mask, positions = input_ids.to(device), mask.to(device), positions.to(device)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
        return [float(v) for v in logits[:, 0]]


def _load(model: ModelConfig, offline: bool) -> tuple[RewardBackend, Any, int]:
    if model.reward_backend in ("auto", "vllm"):
        try:
            return _load_offline_vllm(model) if offline else _load_vllm(model)
        except Exception as exc:
            if model.reward_backend == "vllm":
                raise
            logger.warning("vLLM cannot serve reward model %s (%s); using transformers", model.model_id, exc)
    return _load_transformers(model)


def _load_vllm(model: ModelConfig) -> tuple[RewardBackend, Any, int]:
    args = vllm_engine_args(model, runner="pooling")
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
    return VLLMRewardBackend(engine), engine.get_tokenizer(), engine.model_config.max_model_len


def _load_offline_vllm(model: ModelConfig) -> tuple[RewardBackend, Any, int]:
    from llamaray.engines.offline_vllm import offline_llm

    llm = offline_llm(model, runner="pooling")
    return OfflineVLLMRewardBackend(llm), llm.get_tokenizer(), llm.llm_engine.model_config.max_model_len


def _load_transformers(model: ModelConfig) -> tuple[RewardBackend, Any, int]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path)
    dtype = torch.float32 if model.dtype in ("auto", "float32") else getattr(torch, model.dtype)
    device = "cuda" if model.accelerator == "gpu" and torch.cuda.is_available() else "cpu"
    network = AutoModelForSequenceClassification.from_pretrained(model.path, dtype=dtype).to(device).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (network.config.pad_token_id or 0)
    network.config.pad_token_id = pad
    max_len = model.max_model_len or getattr(network.config, "max_position_embeddings", 2048)
    return TransformersRewardBackend(network, pad), tokenizer, max_len
