"""What a job reads before any worker starts: the model, the datasets and the plan.

The gateway runs this to answer a bad request with a 4xx; the job's driver runs it again to
get the examples it hands to Ray Train, so both paths check the same things the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llamaray.api.datasets import Dataset
from llamaray.api.post_training import PostTrainingSFTRequest
from llamaray.config import OutboundSettings, PlatformConfig
from llamaray.datasets.readers import read_rows
from llamaray.datasets.registry import check_columns
from llamaray.inference.prompt_format import prompt_format_for
from llamaray.store.storage import NODE_CACHE, SharedStorage, local_copy_of
from llamaray.training.examples import Example, dpo_examples, sft_examples
from llamaray.training.models import linear_module_names, resolve_model
from llamaray.training.plan import TrainingPlan, TrainingRequest, build_plan


@dataclass
class JobInputs:
    plan: TrainingPlan
    train: list[Example]
    validation: list[Example]


def prepare(
    kind: Literal["sft", "dpo"], request: TrainingRequest, platform: PlatformConfig, extra_roots: list[Path] = ()
) -> JobInputs:
    if kind == "sft":
        assert isinstance(request, PostTrainingSFTRequest)
        base = resolve_model(request.model, platform, "model")
    else:
        base = resolve_model(request.finetuned_model, platform, "finetuned_model")
    roots = [Path(root) for root in dict.fromkeys([platform.data_dir, *platform.dataset_roots])] + list(extra_roots)
    base_dir = str(local_copy_of(base.model_path, NODE_CACHE))
    served = next((m.prompt_format for m in platform.models if m.path == base.model_path), base.prompt_format)
    prompt_format = prompt_format_for(base_dir, served)  # as serving writes this model's prompts

    def to_examples(dataset: Dataset, rows: list[dict], param: str) -> list[Example]:
        if kind == "sft":
            return sft_examples(dataset, rows, param, request.training_config.last_turn_only, prompt_format)
        return dpo_examples(dataset, rows, param, prompt_format)

    outbound, storage = platform.outbound, SharedStorage.of_platform(platform)
    train = to_examples(request.dataset, _rows(request.dataset, roots, "dataset", outbound, storage), "dataset")
    validation = to_examples(
        request.validation_dataset,
        _rows(request.validation_dataset, roots, "validation_dataset", outbound, storage),
        "validation_dataset",
    )
    modules = linear_module_names(base_dir)
    plan = build_plan(kind, request, base, modules, platform)
    return JobInputs(plan, train, validation)


def _rows(
    dataset: Dataset, roots: list[Path], param: str, outbound: OutboundSettings, storage: SharedStorage
) -> list[dict]:
    rows = read_rows(dataset.content_url, roots, f"{param}.content_url", outbound, storage)
    check_columns(dataset, rows, f"{param}.columns")
    return rows
