"""The Ray Data pipelines of batch completion and synthetic data generation.

    rows ─ map_batches(Generate) ─ [map_batches(Score) ─ map(Filter)] ─ rows out

`Generate` runs on an actor pool; each actor holds one vLLM engine (in its own process, see
`OfflineVLLMEngine`) and keeps `max_concurrent_batches` batches in it at once, so the engine's
continuous batching always has work while a batch's last, longest sequences finish (one batch
at a time leaves it idle then).
`Score` holds the reward model the same way. Rows carry their prompt's index and JSON text for
anything nested, so every stage and the output are plain columns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from typing import Any, Iterator

from llamaray.api.common import Message
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
from llamaray.config import DataSettings, ModelConfig
from llamaray.engines.offline_vllm import OfflineVLLMEngine
from llamaray.engines.pooling import PoolingEngine
from llamaray.engines.protocol import AdapterRef, EngineRequest, GenerationParams, SequenceDelta, TokenLogprob
from llamaray.pipelines.sdg import kept_indices, scored_answers

Batch = dict[str, Any]  # a Ray Data batch in numpy format: column name -> array


class Generate:
    """Completes each row's `prompt`; adds `outputs` (JSON list of sequences) and token counts."""

    def __init__(
        self, model: dict[str, Any], params: GenerationParams, stop_tokens: list[str], adapter: AdapterRef | None = None
    ) -> None:
        self.engine = OfflineVLLMEngine(ModelConfig.model_validate(model))
        self.params = params
        self.stop_tokens = stop_tokens
        self.adapter = adapter

    async def __call__(self, batch: Batch) -> Batch:
        outs = await self.engine.generate_many(
            [self._request(str(p), bool(a)) for p, a in zip(batch["prompt"], batch["add_special_tokens"])]
        )
        batch["outputs"] = [json.dumps([dataclasses.asdict(s) for s in out.sequences]) for out in outs]
        batch["generated_tokens"] = [sum(s.num_tokens for s in out.sequences) for out in outs]
        return batch

    def _request(self, prompt: str, add_special_tokens: bool) -> EngineRequest:
        return EngineRequest(
            request_id=f"batch-{uuid.uuid4().hex}",
            prompt=prompt,
            params=self.params,
            add_special_tokens=add_special_tokens,
            stop_tokens=self.stop_tokens,
            adapter=self.adapter,
        )


class Score:
    """Scores each row's k generations of its `messages`; adds `generations` and `scores`."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.engine = PoolingEngine(ModelConfig.model_validate(model), offline=True)

    async def __call__(self, batch: Batch) -> Batch:
        dialogs = [[Message.model_validate(m) for m in json.loads(messages)] for messages in batch["messages"]]
        answers, scores = await scored_answers(self.engine, dialogs, [sequences(o) for o in batch["outputs"]])
        batch["generations"] = [json.dumps([a.model_dump(mode="json") for a in group]) for group in answers]
        batch["scores"] = [json.dumps(group) for group in scores]
        return batch


class Filter:
    """The request's filtering function over one prompt's scores; adds `kept` (indices)."""

    def __init__(self, request: SyntheticDataGenerationRequest) -> None:
        self.request = request

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row["kept"] = json.dumps(kept_indices(json.loads(row["scores"]), self.request, int(row["index"])))
        return row


def sequences(outputs_json: str) -> list[SequenceDelta]:
    out = []
    for s in json.loads(outputs_json):
        if s["logprobs"] is not None:
            s["logprobs"] = [
                TokenLogprob(lp["token"], lp["logprob"], [tuple(t) for t in lp["top"]]) for lp in s["logprobs"]
            ]
        out.append(SequenceDelta(**s))
    return out


def generation_stage(
    ds,
    model: ModelConfig,
    params: GenerationParams,
    stop_tokens: list[str],
    settings: DataSettings,
    generate: type[Generate] = Generate,
    adapter: AdapterRef | None = None,
):
    """`map_batches(Generate)` over an actor pool of `generator_replicas` engines; with an
    adapter, each engine applies it as a LoRA over the base model."""
    import ray.data

    model = engine_model(model, adapter)
    kwargs = {"model": model.model_dump(), "params": params, "stop_tokens": stop_tokens, "adapter": adapter}
    return ds.map_batches(
        generate,
        fn_constructor_kwargs=kwargs,
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(
            size=settings.generator_replicas,
            max_tasks_in_flight_per_actor=settings.max_concurrent_batches,
            max_concurrent_calls_per_actor=settings.max_concurrent_batches,
        ),
        num_cpus=settings.generator_num_cpus,
        num_gpus=settings.generator_num_gpus * model.world_size,
        # Ray gives an actor int(num_cpus) OpenMP threads: 1.5 CPUs would run the model on one.
        runtime_env={
            "env_vars": {"OMP_NUM_THREADS": str(max(1, math.ceil(settings.generator_num_cpus))), **model.engine_env()}
        },
    )


def engine_model(model: ModelConfig, adapter: AdapterRef | None) -> ModelConfig:
    """The model as a job's engines load it: LoRA only for a job that runs an adapter, and then
    for that one adapter. vLLM's LoRA layers wrap every linear layer whether a batch uses an
    adapter or not; on the tiny model they took about a third of the batch benchmark's generation time."""
    lora = model.lora.model_copy(update={"max_loras": 1 if adapter else 0, "max_cpu_loras": None})
    return model.model_copy(update={"lora": lora})


def sdg_dataset(
    rows: list[dict[str, Any]],
    request: SyntheticDataGenerationRequest,
    generator: ModelConfig,
    reward: ModelConfig,
    params: GenerationParams,
    stop_tokens: list[str],
    settings: DataSettings,
    adapter: AdapterRef | None = None,
):
    """Generate, then score, then filter: one row per prompt with all k generations."""
    import ray.data

    ds = generation_stage(ray.data.from_items(rows), generator, params, stop_tokens, settings, adapter=adapter)
    ds = ds.map_batches(
        Score,
        fn_constructor_kwargs={"model": reward.model_dump()},
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(
            size=settings.scorer_replicas, max_tasks_in_flight_per_actor=2, max_concurrent_calls_per_actor=2
        ),
        num_cpus=settings.scorer_num_cpus,
        num_gpus=settings.scorer_num_gpus,
        runtime_env={"env_vars": reward.engine_env()},
    )
    return ds.map(
        Filter, fn_constructor_kwargs={"request": request}, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.1
    )


def batch_dataset(
    rows: list[dict[str, Any]],
    model: ModelConfig,
    params: GenerationParams,
    stop_tokens: list[str],
    settings: DataSettings,
    adapter: AdapterRef | None = None,
):
    import ray.data

    return generation_stage(ray.data.from_items(rows), model, params, stop_tokens, settings, adapter=adapter)


def iter_rows(ds) -> Iterator[dict[str, Any]]:
    """The pipeline's rows as they come, without the prompt text that was fed to the engine."""
    for row in ds.iter_rows():
        yield {key: value for key, value in row.items() if key not in ("prompt", "add_special_tokens")}
