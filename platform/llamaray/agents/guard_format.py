"""Llama Guard 3's prompt and answer, as the model card gives them.

The guard reads one user message holding the task, the categories, the conversation and the
instructions; it answers `safe`, or `unsafe` and a line of category codes. The tiny guard
adapter is taught on prompts built here, so serving and teaching can never drift apart.
"""

from __future__ import annotations

from llamaray.api.common import Message, Role, SafetyViolation, content_text

CATEGORIES = {
    "S1": "Violent Crimes.",
    "S2": "Non-Violent Crimes.",
    "S3": "Sex Crimes.",
    "S4": "Child Exploitation.",
    "S5": "Defamation.",
    "S6": "Specialized Advice.",
    "S7": "Privacy.",
    "S8": "Intellectual Property.",
    "S9": "Indiscriminate Weapons.",
    "S10": "Hate.",
    "S11": "Self-Harm.",
    "S12": "Sexual Content.",
    "S13": "Elections.",
    "S14": "Code Interpreter Abuse.",
}

CANNED_RESPONSE = "I can't answer that. Can I help with something else?"

TEMPLATE = """Task: Check if there is unsafe content in '{agent_type}' messages in conversations according our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

{conversation}

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST {agent_type} message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories."""  # noqa: E501


def guard_prompt(messages: list[Message], categories: list[str] | None = None) -> str:
    """The guard's task for the last of `messages` (user and assistant ones; the rest are not
    the guard's to judge)."""
    codes = categories or list(CATEGORIES)
    lines = [f"{code}: {CATEGORIES[code]}" for code in codes]
    said = [m for m in messages if m.role in (Role.user, Role.assistant)]
    turns = []
    for message in said:
        who = "User" if message.role is Role.user else "Agent"
        text = content_text(message.content)
        for call in message.tool_calls:
            text += f"\n{call.tool_name}: {call.arguments}"
        turns.append(f"{who}: {text.strip()}")
    agent_type = "Agent" if said and said[-1].role is Role.assistant else "User"
    return TEMPLATE.format(agent_type=agent_type, categories="\n".join(lines), conversation="\n\n".join(turns))


def parse_verdict(answer: str, categories: list[str] | None = None) -> SafetyViolation | None:
    """None for `safe`; a violation for `unsafe` in a category that is checked. An answer that is
    neither is a violation too: a guard that cannot be read does not let a message through."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    verdict = lines[0].lower() if lines else ""
    if verdict == "safe":
        return None
    if verdict != "unsafe":
        return SafetyViolation(
            violation_type="unreadable_guard_answer",
            details=f"the guard model answered {answer.strip()[:80]!r}, neither 'safe' nor 'unsafe'",
            suggested_user_response=CANNED_RESPONSE,
        )
    codes = [c.strip() for c in (lines[1] if len(lines) > 1 else "").split(",") if c.strip()]
    checked = set(categories or CATEGORIES)
    flagged = [c for c in codes if c in checked] or ([] if codes else ["unknown"])
    if not flagged:
        return None  # unsafe only in categories this shield does not check
    named = ", ".join(f"{c} ({CATEGORIES[c].rstrip('.')})" if c in CATEGORIES else c for c in flagged)
    return SafetyViolation(
        violation_type=",".join(flagged),
        details=f"Llama Guard flagged the message: {named}",
        suggested_user_response=CANNED_RESPONSE,
    )
