"""Turns a template version, inputs, the brand voice and approved examples into chat messages."""

from __future__ import annotations

import re
from typing import Any

from generation.models import BrandVoice, TemplateVersion, Variant

#: Approved variants shown as examples; 3 keeps a 135M model's prompt under ~1k tokens.
FEW_SHOT_EXAMPLES = 3
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(text: str, inputs: dict[str, Any]) -> str:
    """Fill {name} placeholders; a missing optional value becomes 'not specified'."""
    return _PLACEHOLDER.sub(lambda m: str(inputs.get(m.group(1)) or "not specified"), text)


def brand_voice_instructions(voice: BrandVoice | None) -> str:
    if voice is None:
        return ""
    lines = []
    if voice.tone:
        lines.append(f"Tone: {voice.tone}.")
    if voice.audience:
        lines.append(f"Audience: {voice.audience}.")
    if voice.words_to_use:
        lines.append("Use words like: " + ", ".join(voice.words_to_use) + ".")
    if voice.words_to_avoid:
        lines.append("Never use these words: " + ", ".join(voice.words_to_avoid) + ".")
    if voice.example_texts:
        lines.append("Examples of the brand's writing:\n" + "\n".join(f"- {t}" for t in voice.example_texts[:3]))
    return "\n".join(lines)


def build_messages(
    version: TemplateVersion,
    inputs: dict[str, Any],
    voice: BrandVoice | None,
    examples: list[Variant],
) -> list[dict[str, str]]:
    system = version.system_prompt
    voice_text = brand_voice_instructions(voice)
    if voice_text:
        system += "\n\nBrand voice:\n" + voice_text
    messages = [{"role": "system", "content": system}]
    # Approved copy for the same template becomes few-shot turns: the marketer's feedback
    # steers the next generations toward what they approved.
    for example in examples:
        messages.append({"role": "user", "content": render(version.prompt, example.job.inputs)})
        messages.append({"role": "assistant", "content": example.final_text})
    messages.append({"role": "user", "content": render(version.prompt, inputs)})
    return messages


def approved_examples(project_id: Any, template_id: Any, limit: int = FEW_SHOT_EXAMPLES) -> list[Variant]:
    return list(
        Variant.objects.filter(
            approved=True, is_current=True, job__project_id=project_id, job__template_version__template_id=template_id
        )
        .select_related("job")
        .order_by("-approved_at")[:limit]
    )
