"""Limits on how much one request may ask for, checked while the request is parsed.

The sizes are configuration (`limits:` in a deployment config, `LimitSettings`), not constants
of a type, so the types mark a countable field with `at_most("max_messages")` and the check reads
the limits this process was given (`use_limits`, called by the gateway and by a job's driver;
the defaults otherwise). A field over its limit is a 422 that names it and the setting; bounds
that are the engine's own (a 64-bit seed, vLLM's at most 20 logprobs) are plain `Field`s.
"""

from __future__ import annotations

from typing import Any, Sized

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing_extensions import Annotated


class LimitSettings(BaseModel):
    """What one request may ask for: beyond each, a 4xx that names the field and the limit.
    Sized for one node; raise them with the hardware. (The `limits:` section of a deployment
    config; it lives here, beside the check, because the API's types import nothing else.)"""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(default=32 << 20, ge=1024)  # 413 before the body is read further
    max_messages: int = Field(default=1024, ge=1)  # in one dialog or chat request
    max_prompts: int = Field(default=4096, ge=1)  # prompts x `n` (or x generations) in one request
    max_documents: int = Field(default=1024, ge=1)  # in one memory bank insert or update
    max_stop: int = Field(default=16, ge=1)  # stop strings in one request
    # Jobs of both families running at once; more wait their turn, `scheduled`, in the order
    # their drivers started (a queue of max_active_jobs - max_running_jobs at most).
    max_running_jobs: int = Field(default=4, ge=1)
    # Jobs scheduled or running at once; one more is a 429 with Retry-After.
    max_active_jobs: int = Field(default=16, ge=1)
    max_log_followers: int = Field(default=32, ge=1)  # streams of one job's log, per gateway replica
    # A post-training job: its Ray Train workers and what each asks for, its length and size.
    max_workers: int = Field(default=64, ge=1)
    max_cpus_per_worker: float = Field(default=256, gt=0)
    max_gpus_per_worker: float = Field(default=8, ge=0)
    max_epochs: int = Field(default=1000, ge=1)
    max_iters: int = Field(default=10_000_000, ge=1)
    max_batch_size: int = Field(default=4096, ge=1)
    max_lora_rank: int = Field(default=1024, ge=1)


_limits = LimitSettings()

# vLLM's own protocol bounds: a seed is a signed 64-bit integer; a count that goes to the engine
# as a C int fits 32 bits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1


def use_limits(limits: LimitSettings) -> None:
    global _limits
    _limits = limits


def current_limits() -> LimitSettings:
    return _limits


def check_count(count: int, setting: str, what: str) -> None:
    limit = getattr(_limits, setting)
    if count > limit:
        raise ValueError(f"{count} {what}, more than limits.{setting} ({limit}) allows")


def at_most(setting: str, what: str = "items") -> AfterValidator:
    """A validator for a list (or a string) that holds at most `limits.<setting>` items."""

    def check(value: Any) -> Any:
        if isinstance(value, Sized) and not isinstance(value, (str, bytes)):
            check_count(len(value), setting, what)
        return value

    return AfterValidator(check)


def not_above(setting: str) -> AfterValidator:
    """A validator for a number that may be at most `limits.<setting>`."""

    def check(value: Any) -> Any:
        limit = getattr(_limits, setting)
        if value is not None and value > limit:
            raise ValueError(f"{value} is more than limits.{setting} ({limit}) allows")
        return value

    return AfterValidator(check)


Seed = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
