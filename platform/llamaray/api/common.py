"""Types shared by every API: the draft's `model_types` (Llama Stack, 2024-07-11).

Field names and defaults follow the draft exactly, so a client written against the draft works
unchanged; where the draft is silent, the bounds below are the ones that keep a request from
reaching an engine in a state that would fail there instead of here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import Annotated

from llamaray.api.limits import INT32_MAX, at_most

URL = Annotated[str, StringConstraints(pattern=r"^(https?://|file://|data:)")]
# The draft's URL, or the platform's object store (`storage_path`): where checkpoints and the
# datasets jobs write live on a cluster.
StoredURL = Annotated[str, StringConstraints(pattern=r"^(https?://|file://|data:|s3://|gs://|gcs://)")]
# A name a request gives that becomes a file or directory name (a job's directory, a data job's
# output file): a safe alphabet, so no name is a path (no '/', no leading '.').
SafeName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class ApiModel(BaseModel):
    """Base of every API type: unknown fields are errors, so a typo names itself in a 422."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class Attachment(ApiModel):
    url: URL
    mime_type: str


Content = Union[str, Attachment, list[Union[str, Attachment]]]


class Role(str, Enum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class ToolCall(ApiModel):
    tool_name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResponse(ApiModel):
    tool_name: str
    content: Content


class BuiltinTool(str, Enum):
    web_search = "web_search"
    math = "math"
    image_gen = "image_gen"
    code_interpreter = "code_interpreter"


class ShieldType(str, Enum):
    llama_guard = "llama_guard"
    prompt_guard = "prompt_guard"
    code_guard = "code_guard"


class ShieldConfig(ApiModel):
    shield_type: ShieldType
    params: dict[str, Any] = Field(default_factory=dict)


class ToolDefinition(ApiModel):
    tool_name: Union[BuiltinTool, str]
    # JSON-schema-like: {"param": {"param_type": "str", "description": ..., "required": true}}
    # or a full JSON schema ({"type": "object", "properties": ...}); both are rendered as given.
    parameters: dict[str, Any] | None = None
    description: str | None = None
    input_shields: list[ShieldConfig] = Field(default_factory=list)
    output_shields: list[ShieldConfig] = Field(default_factory=list)


class StopReason(str, Enum):
    not_stopped = "not_stopped"
    finished_ok = "finished_ok"
    max_tokens = "max_tokens"


class Message(ApiModel):
    role: Role
    content: Content
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_responses: list[ToolResponse] = Field(default_factory=list)


class Dialog(ApiModel):
    message: Message
    message_history: Annotated[list[Message], at_most("max_messages", "messages")] | None = None

    def messages(self) -> list[Message]:
        """The history first, then `message`: the order the model reads them in."""
        return [*(self.message_history or []), self.message]


class SamplingStrategy(str, Enum):
    greedy = "greedy"
    top_p = "top_p"
    top_k = "top_k"


class SamplingParams(ApiModel):
    temperature: float = Field(default=0.0, ge=0.0, le=10.0)
    strategy: SamplingStrategy = SamplingStrategy.greedy
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, le=INT32_MAX)


class PretrainedModel(str, Enum):
    llama3_8b = "llama3_8b"
    llama3_70b = "llama3_70b"


class InstructModel(str, Enum):
    llama3_8b_chat = "llama3_8b_chat"
    llama3_70b_chat = "llama3_70b_chat"


class RewardModel(str, Enum):
    llama3_405b_reward = "llama3_405b_reward"


# A request's `model` is any id the running deployment registers (API.md's decision); the enums
# above are the well-known ids that the GPU configs map to real checkpoints.
ModelId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SafetyViolation(ApiModel):
    violation_type: str
    details: str
    suggested_user_response: str | None = None


def content_text(content: Content) -> str:
    """The text of a Content; attachments become their URL, which is all a text model can read."""
    if isinstance(content, str):
        return content
    if isinstance(content, Attachment):
        return content.url
    return "".join(content_text(part) for part in content)
