"""Pooling models: one forward pass, the logits out. A reward model gives one scalar per
conversation, read in the model's own chat format; a classifier (a prompt guard) gives each text
a probability per label.

vLLM's pooling runner serves sequence-classification checkpoints (Llama-architecture reward
models among them) with continuous batching; a model whose architecture vLLM lacks (DeBERTa, as
in Prompt-Guard-86M) runs on transformers instead. Both backends answer raw logits, so scores
from either compare: a reward is the logit of the model's single label, the value a
Bradley-Terry reward model is trained to produce (the `sigmoid` filter maps it to a probability
later); a classifier's probabilities are their softmax, here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any, Protocol

from llamaray.config import ModelConfig
from llamaray.engines.protocol import LONG_TEXT_CHARS, Conversation
from llamaray.engines.vllm_args import set_engine_environment, vllm_engine_args
from llamaray.errors import InvalidRequestError

logger = logging.getLogger(__name__)


class PoolingBackend(Protocol):
    async def logits(self, token_ids: list[list[int]]) -> list[list[float]]: ...

    async def check_health(self) -> None: ...

    def shutdown(self) -> None: ...


class PoolingEngine:
    """A `ScoringEngine`: scores conversations (the generation last) in the model's chat
    template, and labels plain texts."""

    def __init__(self, model: ModelConfig, offline: bool = False) -> None:
        """`offline`: vLLM's engine core in this process (a batch job's actor), not a process
        of its own (a Serve replica, where `AsyncLLM` also watches the engine's health)."""
        set_engine_environment(model)
        started = time.monotonic()
        self.model = model
        self.backend, self.tokenizer, self.max_model_len = _load(model, offline)
        self.labels = _labels(model.path)
        logger.warning(
            "%s model %s ready on %s in %.1fs",
            model.kind,
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
        if sum(len(turn["content"]) for c in conversations for turn in c) > LONG_TEXT_CHARS:
            ids = await asyncio.to_thread(lambda: [self.encode(c) for c in conversations])
        else:
            ids = [self.encode(c) for c in conversations]
        return [row[0] for row in await self.backend.logits(ids)]

    async def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Each text's probability per label. A text longer than the model reads is cut into
        windows and each label takes its highest probability over them, as Meta advises for
        Prompt Guard: an injection anywhere in a long document is still found."""
        if sum(len(text) for text in texts) > LONG_TEXT_CHARS:
            windows = await asyncio.to_thread(lambda: [self._windows(text) for text in texts])
        else:
            windows = [self._windows(text) for text in texts]
        rows = await self.backend.logits([ids for text_windows in windows for ids in text_windows])
        answers, start = [], 0
        for text_windows in windows:
            probabilities = [_softmax(row) for row in rows[start : start + len(text_windows)]]
            start += len(text_windows)
            answers.append({label: max(p[i] for p in probabilities) for i, label in enumerate(self.labels)})
        return answers

    def _windows(self, text: str) -> list[list[int]]:
        encoded = self.tokenizer(text, truncation=True, max_length=self.max_model_len, return_overflowing_tokens=True)
        return [list(ids) for ids in encoded["input_ids"]] or [[]]

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model.model_id,
            "kind": self.model.kind,
            "backend": type(self.backend).__name__,
            "healthy": True,
        }

    async def check_health(self) -> None:
        """A dead vLLM engine raises here, which marks a Serve replica unhealthy."""
        await self.backend.check_health()

    def shutdown(self) -> None:
        self.backend.shutdown()


def _raw_logits():
    from vllm.pooling_params import PoolingParams

    return PoolingParams(task="classify", use_activation=False)


class VLLMPoolingBackend:
    def __init__(self, engine) -> None:
        self.engine = engine

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        self.engine.shutdown()

    async def logits(self, token_ids: list[list[int]]) -> list[list[float]]:
        return list(await asyncio.gather(*(self._one(ids) for ids in token_ids)))

    async def _one(self, ids: list[int]) -> list[float]:
        from vllm.inputs import TokensPrompt

        final = None
        async for final in self.engine.encode(  # noqa: B007 (the last output is the answer)
            TokensPrompt(prompt_token_ids=ids), _raw_logits(), f"pooling-{uuid.uuid4().hex}"
        ):
            pass
        return final.outputs.data.reshape(-1).tolist()


class OfflineVLLMPoolingBackend:
    def __init__(self, model: ModelConfig) -> None:
        from llamaray.engines.offline_vllm import EngineStepper, offline_llm

        self.stepper = EngineStepper(lambda: offline_llm(model, runner="pooling"))
        self.llm = self.stepper.llm

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        pass

    async def logits(self, token_ids: list[list[int]]) -> list[list[float]]:
        from vllm.inputs import TokensPrompt

        outs = await asyncio.gather(
            *(
                self.stepper.run(f"pooling-{uuid.uuid4().hex}", TokensPrompt(prompt_token_ids=ids), _raw_logits())
                for ids in token_ids
            )
        )
        return [out.outputs.data.reshape(-1).tolist() for out in outs]


class TransformersPoolingBackend:
    """One forward pass per call, in a thread so the replica keeps answering."""

    def __init__(self, model, pad_token_id: int) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.lock = asyncio.Lock()

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        pass

    async def logits(self, token_ids: list[list[int]]) -> list[list[float]]:
        async with self.lock:
            return await asyncio.to_thread(self._forward, token_ids)

    def _forward(self, token_ids: list[list[int]]) -> list[list[float]]:
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
        return logits.float().tolist()


def _load(model: ModelConfig, offline: bool) -> tuple[PoolingBackend, Any, int]:
    if model.pooling_backend in ("auto", "vllm"):
        try:
            return _load_offline_vllm(model) if offline else _load_vllm(model)
        except Exception as exc:
            if model.pooling_backend == "vllm":
                raise
            logger.warning("vLLM cannot serve %s model %s (%s); using transformers", model.kind, model.model_id, exc)
    return _load_transformers(model)


def _load_vllm(model: ModelConfig) -> tuple[PoolingBackend, Any, int]:
    args = vllm_engine_args(model, runner="pooling")
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
    return VLLMPoolingBackend(engine), engine.get_tokenizer(), engine.model_config.max_model_len


def _load_offline_vllm(model: ModelConfig) -> tuple[PoolingBackend, Any, int]:
    backend = OfflineVLLMPoolingBackend(model)
    llm = backend.llm
    return backend, llm.get_tokenizer(), llm.llm_engine.model_config.max_model_len


def _load_transformers(model: ModelConfig) -> tuple[PoolingBackend, Any, int]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path)
    dtype = torch.float32 if model.dtype in ("auto", "float32") else getattr(torch, model.dtype)
    device = "cuda" if model.accelerator == "gpu" and torch.cuda.is_available() else "cpu"
    network = AutoModelForSequenceClassification.from_pretrained(model.path, dtype=dtype).to(device).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (network.config.pad_token_id or 0)
    network.config.pad_token_id = pad
    max_len = model.max_model_len or getattr(network.config, "max_position_embeddings", 2048)
    return TransformersPoolingBackend(network, pad), tokenizer, max_len


def _labels(path: str) -> list[str]:
    """The model's label names in logit order (`id2label`); a reward model's one is unnamed."""
    from transformers import AutoConfig

    id2label = AutoConfig.from_pretrained(path).id2label
    return [str(id2label[i]) for i in sorted(id2label)]


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]
