"""The draft's SamplingParams mapped onto the engine's, with the checks vLLM would fail later."""

from __future__ import annotations

from llamaray.api.common import SamplingParams, SamplingStrategy, StopReason
from llamaray.engines.protocol import GenerationParams, TokenLogprob
from llamaray.errors import InvalidRequestError


def generation_params(sampling: SamplingParams, max_tokens: int, logprobs: bool) -> GenerationParams:
    """`greedy` ignores temperature; `top_p` and `top_k` sample at `temperature`, which must be > 0."""
    params = GenerationParams(max_tokens=max_tokens or None, logprobs=0 if logprobs else None)
    if sampling.strategy is SamplingStrategy.greedy:
        return params
    if sampling.temperature <= 0:
        raise InvalidRequestError(
            f"strategy {sampling.strategy.value!r} samples, so temperature must be > 0",
            "sampling_params.temperature",
        )
    params.temperature = sampling.temperature
    if sampling.strategy is SamplingStrategy.top_p:
        params.top_p = sampling.top_p
    else:
        if sampling.top_k < 1:
            raise InvalidRequestError("strategy 'top_k' needs top_k >= 1", "sampling_params.top_k")
        params.top_k = sampling.top_k
    return params


def stop_reason(finish_reason: str | None) -> StopReason:
    if finish_reason is None:
        return StopReason.not_stopped
    return StopReason.max_tokens if finish_reason == "length" else StopReason.finished_ok


def logprobs_dict(logprobs: list[TokenLogprob] | None) -> dict | None:
    if logprobs is None:
        return None
    return {"tokens": [lp.token for lp in logprobs], "token_logprobs": [lp.logprob for lp in logprobs]}
