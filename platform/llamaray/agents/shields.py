"""Shields: a real model or library judging messages, each answering a `SafetyViolation` or None.

- `llama_guard`: a guard model served on the platform's engines (Llama-Guard-3 on GPUs, the
  tiny taught guard adapter locally), asked in the Llama Guard 3 format.
- `code_guard`: Meta's CodeShield over the code a message carries. Its semgrep analysis is run
  here with the file named relative to a working directory: CodeShield 1.0.1 passes
  `--project-root /` with an absolute path, and current semgrep then scans nothing.
- `prompt_guard`: a classifier served on the platform's engines with Prompt Guard's labels
  (BENIGN, INJECTION, JAILBREAK: Prompt-Guard-86M on GPUs, the tiny taught one locally). As in
  Llama Stack, `params.mode` `jailbreak` (the default, for what users write) flags a JAILBREAK
  probability over `params.threshold`; `injection` (for what tools and documents bring in) flags
  INJECTION and JAILBREAK together over it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any, Protocol

from llamaray.agents.guard_format import CANNED_RESPONSE, CATEGORIES, guard_prompt, parse_verdict
from llamaray.api.common import (
    BuiltinTool,
    Message,
    SafetyViolation,
    ShieldConfig,
    ShieldType,
    content_text,
)
from llamaray.config import AgentSettings
from llamaray.engines.protocol import EngineClient, GenerationParams, ScoringClient
from llamaray.errors import InvalidRequestError, NotFoundError
from llamaray.inference.registry import ModelRegistry
from llamaray.inference.service import chat_engine_request

GUARD_MAX_TOKENS = 16
PROMPT_GUARD_THRESHOLD = 0.9  # Llama Stack's default
PROMPT_GUARD_FLAGS = {"jailbreak": ("JAILBREAK",), "injection": ("INJECTION", "JAILBREAK")}
SHIELD_PARAMS = {
    ShieldType.llama_guard: {"model", "categories"},
    ShieldType.prompt_guard: {"model", "mode", "threshold"},
    ShieldType.code_guard: set(),
}


class Shield(Protocol):
    async def check(self, messages: list[Message]) -> SafetyViolation | None: ...


class LlamaGuardShield:
    def __init__(self, engine: EngineClient, categories: list[str] | None) -> None:
        self.engine = engine
        self.categories = categories

    async def check(self, messages: list[Message]) -> SafetyViolation | None:
        prompt = Message(role="user", content=guard_prompt(messages, self.categories))
        request = chat_engine_request([prompt], [], GenerationParams(max_tokens=GUARD_MAX_TOKENS), "messages")
        out = await self.engine.generate(request)
        return parse_verdict(out.sequences[0].text, self.categories)


class PromptGuardShield:
    """Prompt Guard over each text the messages carry (a client's tool responses included: where
    injections come in); the worst one decides."""

    def __init__(self, classifier: ScoringClient, mode: str, threshold: float) -> None:
        self.classifier = classifier
        self.mode = mode
        self.threshold = threshold

    async def check(self, messages: list[Message]) -> SafetyViolation | None:
        carried = [m.content for m in messages] + [r.content for m in messages for r in m.tool_responses]
        texts = [text for content in carried if (text := content_text(content)).strip()]
        if not texts:
            return None
        flagged = PROMPT_GUARD_FLAGS[self.mode]
        scores = [sum(labels.get(label, 0.0) for label in flagged) for labels in await self.classifier.classify(texts)]
        worst = max(scores)
        if worst <= self.threshold:
            return None
        kind = "jailbreak" if self.mode == "jailbreak" else "prompt_injection"
        return SafetyViolation(
            violation_type=kind,
            details=f"Prompt Guard: {' + '.join(flagged)} probability {worst:.3f} is over {self.threshold:g}",
            suggested_user_response=f"I can't answer that: it looks like a {kind.replace('_', ' ')}. {CANNED_RESPONSE}",
        )


class CodeGuardShield:
    """CodeShield's regex rules and its semgrep rules for Python, over the code a message holds
    (a code interpreter call's `code`, else the message's text)."""

    async def check(self, messages: list[Message]) -> SafetyViolation | None:
        if not messages:
            return None
        code = _code_of(messages[-1])
        if not code.strip():
            return None
        issues = await scan_python(code)
        if not issues:
            return None
        named = "; ".join(f"{i['rule']} ({i['cwe_id']}) line {i['line']}" for i in issues)
        return SafetyViolation(
            violation_type="insecure_code",
            details=f"CodeShield found insecure code: {named}",
            suggested_user_response="The code was not run: CodeShield found it insecure. " + CANNED_RESPONSE,
        )


def _code_of(message: Message) -> str:
    calls = [c for c in message.tool_calls if c.tool_name == BuiltinTool.code_interpreter.value]
    if calls:
        return "\n".join(str(c.arguments.get("code", "")) for c in calls)
    return content_text(message.content)


async def scan_python(code: str) -> list[dict[str, Any]]:
    """CodeShield's findings on Python `code`: its regex analyzer, then semgrep with its rules."""
    from codeshield.cs import CodeShield
    from codeshield.insecure_code_detector import oss
    from codeshield.insecure_code_detector.languages import Language

    found = await CodeShield.scan_code(code, Language.PYTHON)
    issues = [
        {"rule": i.pattern_id or i.description, "cwe_id": i.cwe_id, "line": i.line} for i in found.issues_found or []
    ]
    rules = oss.SEMGREP_RULE_REPO_PATH / "_generated_" / "python_codeshield.json"
    with tempfile.TemporaryDirectory(prefix="llamaray-codeguard-") as work:
        (Path(work) / "code.py").write_text(code)
        process = await asyncio.create_subprocess_exec(
            *oss.SEMGREP_COMMAND,
            str(rules),
            "code.py",  # relative: semgrep scans nothing when given an absolute path and project root
            cwd=work,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
    try:
        results = json.loads(stdout)["results"]
    except (ValueError, KeyError):
        raise RuntimeError(f"CodeShield's semgrep failed: {stderr.decode(errors='replace')[-300:]}") from None
    for r in results:
        extra = r.get("extra", {}).get("metadata", {})
        issues.append(
            {"rule": r["check_id"].rsplit(".", 1)[-1], "cwe_id": extra.get("cwe_id", ""), "line": r["start"]["line"]}
        )
    return issues


class Shields:
    """Builds the shield a `ShieldConfig` names, and checks at create that it can run."""

    def __init__(self, registry: ModelRegistry, settings: AgentSettings) -> None:
        self.registry = registry
        self.settings = settings

    def _model(self, config: ShieldConfig, param: str) -> str:
        default = {
            ShieldType.llama_guard: self.settings.llama_guard_model,
            ShieldType.prompt_guard: self.settings.prompt_guard_model,
        }[config.shield_type]
        model = config.params.get("model", default)
        if not isinstance(model, str) or not model:
            raise InvalidRequestError(
                f"shield {config.shield_type.value}: no guard model is configured; name one in "
                f"params.model or agents.{config.shield_type.value}_model",
                param,
            )
        return model

    def _categories(self, config: ShieldConfig, param: str) -> list[str] | None:
        categories = config.params.get("categories")
        if categories is None:
            return None
        unknown = [c for c in categories if c not in CATEGORIES] if isinstance(categories, list) else [categories]
        if unknown or not categories:
            raise InvalidRequestError(
                f"shield llama_guard: params.categories must be a non-empty list of S1-S14, "
                f"not {unknown or categories}",
                param,
            )
        return categories

    def _prompt_guard_options(self, config: ShieldConfig, param: str) -> tuple[str, float]:
        mode = config.params.get("mode", "jailbreak")
        if mode not in PROMPT_GUARD_FLAGS:
            modes = list(PROMPT_GUARD_FLAGS)
            raise InvalidRequestError(f"shield prompt_guard: params.mode must be one of {modes}", param)
        threshold = config.params.get("threshold", PROMPT_GUARD_THRESHOLD)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
            raise InvalidRequestError("shield prompt_guard: params.threshold must be a number between 0 and 1", param)
        return mode, float(threshold)

    async def build(self, config: ShieldConfig, param: str = "input_shields") -> Shield:
        unknown = set(config.params) - SHIELD_PARAMS[config.shield_type]
        if unknown:
            raise InvalidRequestError(f"shield {config.shield_type.value}: unknown params {sorted(unknown)}", param)
        if config.shield_type is ShieldType.code_guard:
            try:
                import codeshield.cs  # noqa: F401
            except ImportError:
                raise InvalidRequestError("shield code_guard: CodeShield is not installed", param) from None
            return CodeGuardShield()
        model = self._model(config, param)
        if config.shield_type is ShieldType.prompt_guard:
            mode, threshold = self._prompt_guard_options(config, param)
            try:
                classifier = self.registry.get(model, "classifier", param)
            except NotFoundError:
                raise InvalidRequestError(
                    f"shield prompt_guard: classifier {model!r} is not deployed here", param
                ) from None
            return PromptGuardShield(classifier.client, mode, threshold)
        try:
            served = await self.registry.chat(model, param)
        except NotFoundError:
            raise InvalidRequestError(f"shield llama_guard: model {model!r} is not deployed here", param) from None
        return LlamaGuardShield(served.client, self._categories(config, param))
