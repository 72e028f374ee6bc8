"""Our requests into vLLM and vLLM's outputs back out, shared by every vLLM engine.

An `EngineRequest` becomes token ids (tokenized here, once, which is also where the context
limit is known) and `SamplingParams` with the checks vLLM would otherwise fail deep inside;
a vLLM `CompletionOutput` becomes a `SequenceDelta`.
"""

from __future__ import annotations

from typing import Any

from llamaray.engines.protocol import AdapterRef, EngineRequest, GenerationParams, SequenceDelta, TokenLogprob
from llamaray.errors import InvalidRequestError
from llamaray.store.storage import NODE_CACHE, local_copy_of


def tokens_prompt(tokenizer, request: EngineRequest) -> tuple[Any, int]:
    """vLLM's `TokensPrompt` of the request, and its length."""
    from vllm.inputs import TokensPrompt

    ids = tokenizer(request.prompt, add_special_tokens=request.add_special_tokens).input_ids
    return TokensPrompt(prompt_token_ids=ids), len(ids)


def tokens_prompts(tokenizer, requests: list[EngineRequest]) -> list[tuple[Any, int]]:
    """`tokens_prompt` of many requests, with one tokenizer call for each `add_special_tokens`
    value among them (a fast tokenizer encodes a list at once)."""
    from vllm.inputs import TokensPrompt

    ids: list[list[int]] = [[] for _ in requests]
    for special in {request.add_special_tokens for request in requests}:
        chosen = [i for i, request in enumerate(requests) if request.add_special_tokens == special]
        encoded = tokenizer([requests[i].prompt for i in chosen], add_special_tokens=special).input_ids
        for i, row in zip(chosen, encoded):
            ids[i] = row
    return [(TokensPrompt(prompt_token_ids=row), len(row)) for row in ids]


def lora_request(adapter: AdapterRef | None) -> Any:
    """vLLM's `LoRARequest` for the adapter: the engine loads it on first use and keeps it."""
    if adapter is None:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest(adapter.name, adapter.int_id, str(local_copy_of(adapter.path, NODE_CACHE)))


def sampling_params(
    request: EngineRequest, prompt_tokens: int, max_model_len: int, tokenizer, final_only: bool = False
):
    """vLLM's `SamplingParams`; a request that cannot fit the context, or that vLLM's own checks
    refuse, is an `InvalidRequestError` naming the field. `final_only`: one output at the end
    (batch work) rather than deltas (streaming)."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMClientError
    from vllm.sampling_params import RequestOutputKind

    p = request.params
    room = max_model_len - prompt_tokens
    if room <= 0:
        raise InvalidRequestError(
            f"the prompt is {prompt_tokens} tokens long; this model's context is {max_model_len} tokens",
            request.prompt_param,
        )
    if p.max_tokens is not None and p.max_tokens > room:
        raise InvalidRequestError(
            f"max_tokens={p.max_tokens} does not fit: the prompt takes {prompt_tokens} of the "
            f"model's {max_model_len} tokens, leaving {room}",
            "max_tokens",
        )
    stop_ids = list(p.stop_token_ids)
    for token in request.stop_tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            stop_ids.append(token_id)
    try:
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
            structured_outputs=structured_outputs(p),
        )
    except (ValueError, VLLMClientError) as exc:  # vLLM's own checks of the request
        raise InvalidRequestError(str(exc), getattr(exc, "parameter", None)) from None


def structured_outputs(p: GenerationParams) -> Any:
    """vLLM's grammar-constrained sampling for a JSON answer (the engine's
    `structured_outputs_config` says how: `vllm_args`)."""
    from vllm.sampling_params import StructuredOutputsParams

    if p.json_schema is not None:
        return StructuredOutputsParams(json=p.json_schema)
    if p.json_object:
        return StructuredOutputsParams(json_object=True)
    return None


def sequence_delta(output) -> SequenceDelta:
    """One of vLLM's `CompletionOutput`s, with its logprobs decoded."""
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
