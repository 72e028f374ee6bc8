"""Synthetic data generation, the parts both ways of running it share.

A request is answered inline on the Serve deployments when it is small, and as a Ray Data job
(`llamaray.pipelines.pipeline`) when it is large; both turn prompts into engine requests, generations
into messages, scores into kept generations and all of it into statistics with these functions,
so the two give the same answer for the same request.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from llamaray.api.common import Message, Role
from llamaray.api.reward_scoring import KScoredPromptGenerations, ScoredMessage
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
from llamaray.config import ModelConfig
from llamaray.engines.protocol import EngineRequest, GenerationParams, SequenceDelta
from llamaray.errors import InvalidRequestError
from llamaray.inference.chat_format import chat_turns
from llamaray.inference.prompt_format import PromptFormat
from llamaray.inference.sampling import generation_params
from llamaray.inference.service import chat_engine_request, chat_response
from llamaray.pipelines.filters import keep


def sdg_params(request: SyntheticDataGenerationRequest, scorer: ModelConfig) -> GenerationParams:
    """k sequences per prompt, seeded so that a run can be repeated; raises a 400 naming the
    field for a bad sampling setting.

    Every generation must then fit the reward model's context with its prompt, or it could not
    be scored after all the work of generating it: without `max_tokens` a generation gets half
    that context (the draft's 0 would otherwise fill the generator's), and a `max_tokens` that
    leaves the prompt no room is refused up front."""
    params = generation_params(request.sampling_params, request.max_tokens, False)
    params.n = request.num_generations
    params.seed = request.seed
    context = scorer.max_model_len
    if context:
        if request.max_tokens >= context:
            raise InvalidRequestError(
                f"max_tokens {request.max_tokens} leaves no room for the prompt in the reward model's "
                f"context ({scorer.model_id}: max_model_len {context}); ask for fewer than {context}",
                "max_tokens",
            )
        if not request.max_tokens:
            params.max_tokens = context // 2
    return params


def prompt_request(
    messages: list[Message], params: GenerationParams, param: str, prompt_format: PromptFormat
) -> EngineRequest:
    return chat_engine_request(messages, [], copy.deepcopy(params), param, prompt_format=prompt_format)


def generated_message(messages: list[Message], sequence: SequenceDelta) -> Message:
    response = chat_response(messages, sequence)
    return Message(role=Role.assistant, content=response.content, tool_calls=response.tool_calls)


async def scored_answers(
    reward, dialogs: list[list[Message]], sequences: list[list[SequenceDelta]]
) -> tuple[list[list[Message]], list[list[float]]]:
    """Each dialog's generated sequences as messages, and their scores from `reward` (anything
    with `score(conversations)`: the Serve client or an in-process `PoolingEngine`), in one call
    so that the reward engine batches it."""
    answers = [[generated_message(dialog, s) for s in group] for dialog, group in zip(dialogs, sequences)]
    flat = iter(
        await reward.score([chat_turns([*dialog, a]) for dialog, group in zip(dialogs, answers) for a in group])
    )
    return answers, [[next(flat) for _ in group] for group in answers]


def kept_indices(scores: list[float], request: SyntheticDataGenerationRequest, prompt_index: int) -> list[int]:
    """The filter over one prompt's scores; `random` draws with a seed per prompt."""
    return keep(
        scores,
        request.filtering_function,
        top_k=request.top_k,
        top_p=request.top_p,
        threshold=request.threshold,
        seed=request.seed * 1_000_003 + prompt_index,
    )


def scored_prompt(
    prompt: Message, generations: list[Message], scores: list[float], kept: list[int]
) -> KScoredPromptGenerations:
    return KScoredPromptGenerations(
        prompt=prompt, k_scored_generations=[ScoredMessage(message=generations[i], score=scores[i]) for i in kept]
    )


@dataclass
class Statistics:
    """Counts and score summary of a run, added to prompt by prompt."""

    num_prompts: int = 0
    num_generations: int = 0
    num_kept: int = 0
    generated_tokens: int = 0
    score_sum: float = 0.0
    score_min: float = math.inf
    score_max: float = -math.inf
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, scores: list[float], kept: list[int], tokens: int) -> None:
        self.num_prompts += 1
        self.num_generations += len(scores)
        self.num_kept += len(kept)
        self.generated_tokens += tokens
        self.score_sum += sum(scores)
        self.score_min = min([self.score_min, *scores])
        self.score_max = max([self.score_max, *scores])

    def as_dict(self, time_taken_s: float, scored_run: bool = True) -> dict[str, Any]:
        """`scored_run=False` (batch completion): only the prompt, token and time figures."""
        if not scored_run:
            return {
                "num_prompts": self.num_prompts,
                "generated_tokens": self.generated_tokens,
                "time_taken_s": round(time_taken_s, 3),
                **self.extra,
            }
        scored = self.num_generations > 0
        return {
            "num_prompts": self.num_prompts,
            "num_generations": self.num_generations,
            "num_kept": self.num_kept,
            "kept_fraction": self.num_kept / self.num_generations if scored else 0.0,
            "score_mean": self.score_sum / self.num_generations if scored else None,
            "score_min": self.score_min if scored else None,
            "score_max": self.score_max if scored else None,
            "generated_tokens": self.generated_tokens,
            "time_taken_s": round(time_taken_s, 3),
            **self.extra,
        }
