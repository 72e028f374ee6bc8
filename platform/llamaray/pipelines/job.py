"""The driver of one data job (batch completion or synthetic data generation), run as a Ray
Job's entrypoint: `python -m llamaray.pipelines.job {sdg,batch} --config C.yaml`.

`ray job submit -- python jobs/sdg.py --config C.yaml` and the HTTP routes above their inline
size both end here. The driver builds the rows, runs the Ray Data pipeline, streams its rows
into the output file, reports progress to the `JobTracker`, and at the end registers the output
as a dataset. Any failure (a batch that raised, a stop) fails the job with its reason and
removes the partial output, so no dataset is half registered.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Literal

from llamaray.api.common import Message, content_text
from llamaray.api.data_jobs import BatchJobRequest, DataJobKind
from llamaray.api.datasets import DatasetColumnType
from llamaray.api.jobs import JobStatus
from llamaray.api.synthetic_data_generation import SyntheticDataGenerationRequest
from llamaray.config import PlatformConfig
from llamaray.datasets.output import DatasetOutput
from llamaray.errors import LlamarayError
from llamaray.inference.adapters import AdapterCatalog
from llamaray.inference.service import chat_response, completion_response
from llamaray.jobs.driver import driver_exit, is_stop, start_driver
from llamaray.jobs.tracker import TrackerRecords
from llamaray.pipelines import inputs, pipeline
from llamaray.pipelines.sdg import Statistics
from llamaray.store.metadata import MetadataStore
from llamaray.store.storage import SharedStorage

REQUESTS = {"sdg": SyntheticDataGenerationRequest, "batch": BatchJobRequest}
REPORT_EVERY_S = 2.0
SDG_COLUMNS = {
    "prompt_index": DatasetColumnType.number,
    "dialog": DatasetColumnType.dialog,
    "prompt": DatasetColumnType.text,
    "generation": DatasetColumnType.text,
    "score": DatasetColumnType.number,
}
BATCH_COLUMNS = {
    "index": DatasetColumnType.number,
    "completion": DatasetColumnType.text,
    "stop_reason": DatasetColumnType.text,
    "response": DatasetColumnType.json,  # the CompletionResponse / ChatCompletionResponse, as JSON text
}


def main(kind: Literal["sdg", "batch"], argv: list[str] | None = None) -> int:
    started = start_driver(kind, argv, REQUESTS[kind], _what)
    if isinstance(started, int):
        return started
    return driver_exit(started, run(kind, started.request, started.platform, started.tracker))


def run(kind: str, request, platform: PlatformConfig, tracker) -> int:
    import ray

    job_uuid = request.job_uuid
    store = MetadataStore.of_platform(platform.data_dir, platform.metadata_url)
    output = None
    try:
        dataset_id = request.output_dataset_id or job_uuid
        output_format = request.output_format or platform.data.output_format
        output = DatasetOutput(store, SharedStorage.of_platform(platform), dataset_id, output_format)
        if kind == DataJobKind.sdg.value:
            statistics = _run_sdg(request, platform, store, tracker, output)
        else:
            statistics = _run_batch(request, platform, store, tracker, output)
        metadata = {"job_uuid": job_uuid, "kind": kind, "statistics": statistics}
        output.commit(store, SDG_COLUMNS if kind == "sdg" else BATCH_COLUMNS, metadata)
    except BaseException as exc:
        if output is not None:
            output.discard()
        stopped = is_stop(exc)
        status = JobStatus.cancelled if stopped else JobStatus.failed
        reason = None if stopped else _reason(exc)
        ray.get(tracker.finish.remote(job_uuid, status.value, reason, None if stopped else _request_error_param(exc)))
        if reason:
            print(traceback.format_exc(), file=sys.stderr)
        return 0 if stopped else 1
    ray.get(tracker.set_output.remote(job_uuid, output.dataset_id, statistics))
    ray.get(
        tracker.log.remote(
            job_uuid, [f"registered dataset {output.dataset_id!r}: {output.num_rows} rows at {output.path}"]
        )
    )
    ray.get(tracker.finish.remote(job_uuid, JobStatus.completed.value))
    print(json.dumps({"output_dataset_id": output.dataset_id, "statistics": statistics}))
    return 0


def _run_sdg(request: SyntheticDataGenerationRequest, platform, store, tracker, output: DatasetOutput):
    generation, reward = asyncio.run(inputs.check_sdg(request, platform, store, _adapters(platform, store, tracker)))
    rows = inputs.sdg_rows(request, platform, store, generation.prompt_format)
    ds = pipeline.sdg_dataset(
        rows,
        request,
        generation.model,
        reward,
        generation.params,
        generation.stop_tokens,
        platform.data,
        generation.adapter,
    )
    statistics = Statistics()
    started = time.monotonic()
    for row in _progress(pipeline.iter_rows(ds), len(rows), request.job_uuid, tracker, statistics):
        messages = [Message.model_validate(m) for m in json.loads(row["messages"])]
        generations = [Message.model_validate(g) for g in json.loads(row["generations"])]
        scores, kept = json.loads(row["scores"]), json.loads(row["kept"])
        statistics.add(scores, kept, int(row["generated_tokens"]))
        output.write([_sdg_row(int(row["index"]), messages, generations[i], scores[i]) for i in kept])
    return statistics.as_dict(time.monotonic() - started)


def _sdg_row(index: int, messages: list[Message], generation: Message, score: float) -> dict[str, Any]:
    dialog = [m.model_dump(mode="json", exclude_defaults=True) for m in [*messages, generation]]
    return {
        "prompt_index": index,
        "dialog": dialog,
        "prompt": content_text(messages[-1].content),
        "generation": content_text(generation.content),
        "score": score,
    }


def _run_batch(request: BatchJobRequest, platform, store, tracker, output: DatasetOutput):
    generation = asyncio.run(inputs.check_batch(request, platform, store, _adapters(platform, store, tracker)))
    rows = inputs.batch_rows(request, platform, store, generation.prompt_format)
    ds = pipeline.batch_dataset(
        rows, generation.model, generation.params, generation.stop_tokens, platform.data, generation.adapter
    )
    statistics = Statistics()
    started = time.monotonic()
    for row in _progress(pipeline.iter_rows(ds), len(rows), request.job_uuid, tracker, statistics):
        sequence = pipeline.sequences(row["outputs"])[0]
        if generation.chat:
            response = chat_response([Message.model_validate(m) for m in json.loads(row["messages"])], sequence)
        else:
            response = completion_response(sequence)
        statistics.add([], [], int(row["generated_tokens"]))
        output.write(
            [
                {
                    "index": int(row["index"]),
                    "completion": content_text(response.content),
                    "stop_reason": response.stop_reason.value if response.stop_reason else None,
                    "response": response.model_dump_json(),
                }
            ]
        )
    return statistics.as_dict(time.monotonic() - started, scored_run=False)


def _adapters(platform: PlatformConfig, store: MetadataStore, tracker) -> AdapterCatalog:
    """The adapters a job may generate with: the gateway's, found the same way."""
    roots = [Path(root) for root in platform.dataset_roots]
    storage = SharedStorage.of_platform(platform)
    return AdapterCatalog(platform.models, TrackerRecords(tracker), store, roots, set(), storage)


def _progress(
    rows: Iterator[dict[str, Any]], total: int, job_uuid: str, tracker, statistics: Statistics
) -> Iterator[dict[str, Any]]:
    """Passes rows through; every couple of seconds a log line and metrics go to the tracker
    (and the job's log, which `ray job logs` and the dashboard show, with a tqdm bar) and to
    Prometheus (`ray_llamaray_data_job_*`, by job_uuid)."""
    import ray
    from ray.util.metrics import Gauge
    from tqdm import tqdm

    tags = {"job_uuid": job_uuid}
    gauges = {
        key: Gauge(f"llamaray_data_job_{key}", description=text, tag_keys=("job_uuid",))
        for key, text in (
            ("prompts_done", "prompts answered so far"),
            ("generated_tokens", "tokens generated so far"),
            ("tokens_per_second", "generated tokens per second since the first answer"),
        )
    }
    started = last = time.monotonic()
    first: float | None = None  # the rate counts from the first answer, not the engines' start
    ray.get(tracker.start.remote(job_uuid, {"prompts": total}))
    ray.get(tracker.log.remote(job_uuid, [f"started: {total} prompts"]))
    with tqdm(total=total, unit="prompt", file=sys.stdout, mininterval=REPORT_EVERY_S) as bar:
        for row in rows:
            yield row
            bar.update(1)
            now = time.monotonic()
            first = first or now
            if now - last >= REPORT_EVERY_S or bar.n == total:
                last = now
                rate = statistics.generated_tokens / (now - first) if now > first else 0.0
                line = (
                    f"{bar.n}/{total} prompts, {statistics.generated_tokens} tokens generated in {now - started:.1f} s "
                    f"({rate:.0f} tokens/s since the first answer)"
                )
                metric = {
                    "prompts_done": bar.n,
                    "prompts_total": total,
                    "generated_tokens": statistics.generated_tokens,
                    "tokens_per_second": rate,
                }
                ray.get(tracker.report.remote(job_uuid, [line], [metric]))
                for key, gauge in gauges.items():
                    gauge.set(metric[key], tags=tags)


def _what(request) -> str:
    if isinstance(request, SyntheticDataGenerationRequest):
        return f"filter {request.filtering_function.value}"
    return "completion" if request.content_batch is not None else "chat_completion"


def _our_error(exc: BaseException) -> LlamarayError | None:
    """The platform's own error in the chain of causes, if one is there."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        if isinstance(current, LlamarayError):
            return current
        seen.append(current)
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
    return None


# A request's own error, as the remote traceback of a batch names it once Ray Data has wrapped
# it (the exception object itself does not survive the trip).
REQUEST_ERROR_LINE = re.compile(r"^\s*(?:llamaray\.errors\.)?(?:InvalidRequestError|NotFoundError): ", re.MULTILINE)


def _request_error_param(exc: BaseException) -> str | None:
    """The field to name when the request, not the platform, made the job fail ("request" when
    only the traceback says so); None for any other failure."""
    ours = _our_error(exc)
    if ours is not None:
        return (ours.param or "request") if ours.status_code < 500 else None
    return "request" if REQUEST_ERROR_LINE.search(str(exc)) else None


def _reason(exc: BaseException) -> str:
    """The cause a user can act on. A batch that raised reaches the driver wrapped (Ray Data's
    `UserCodeException` inside a `RayTaskError`): our own error is found in the chain, or else
    the original exception's line in the remote traceback."""
    ours = _our_error(exc)
    if ours is not None:
        return f"{ours.param}: {ours.message}" if ours.param else ours.message
    wrappers = ("RayTaskError", "UserCodeException", "ray.exceptions", "ray.data.exceptions")
    lines = [line.strip() for line in str(exc).splitlines()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line) and not line.startswith(wrappers)]
    return (raised[-1] if raised else f"{type(exc).__name__}: {lines[-1] if lines else ''}")[:2000]


if __name__ == "__main__":  # python -m llamaray.pipelines.job {sdg,batch} --config C.yaml
    sys.exit(main(sys.argv[1], sys.argv[2:]))
