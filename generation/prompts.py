"""Turns a template version, inputs, the brand voice and approved examples into chat messages."""

from __future__ import annotations

import re
from typing import Any

from generation.models import BrandVoice, GenerationJob, TemplateVersion, Variant
from knowledge import retrieval
from knowledge.models import SourceKind

#: The knowledge a job's prompt draws on unless its filters name kinds: documents and catalog products.
PROMPT_KNOWLEDGE_KINDS = [SourceKind.DOCUMENT.value, SourceKind.PRODUCT.value]
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


#: Each content language's name in English (the system prompt's language) and in itself: a small model follows
#: "German (Deutsch)" more reliably than a code. Keys: ``settings.CONTENT_LANGUAGES`` (a test holds them equal).
LANGUAGE_NAMES = {
    "en": "English", "de": "German (Deutsch)", "fr": "French (français)", "es": "Spanish (español)",
    "it": "Italian (italiano)", "nl": "Dutch (Nederlands)", "pt": "Portuguese (português)",
    "sv": "Swedish (svenska)", "da": "Danish (dansk)", "pl": "Polish (polski)", "ja": "Japanese (日本語)",
    "zh": "Simplified Chinese (简体中文)",
}


def language_instruction(language: str) -> str:
    """What the system message says about the output's language; nothing for English, the language templates
    are written in (an English job's prompt stays what it was, and so do its cached prompt prefixes)."""
    if language == "en" or language not in LANGUAGE_NAMES:
        return ""
    return (
        f"Write the copy in {LANGUAGE_NAMES[language]}, whatever the language of the request, "
        "the facts or the examples. Keep product and brand names as they are."
    )


def facts_instructions(facts: list[dict[str, Any]]) -> str:
    """The retrieved knowledge, each chunk under its label (``[K1]``), and the rule to state no other fact."""
    if not facts:
        return ""
    lines = [
        "Facts you may use (from the project's knowledge; each starts with its id):",
        *(f"[{fact['label']}] {fact['source']}: {' '.join(fact['text'].split())}" for fact in facts),
        "Use only these facts and the request's own details for prices, numbers, dates, materials and features. "
        "If a detail is not given here, leave it out rather than invent it.",
    ]
    return "\n".join(lines)


def build_messages(
    version: TemplateVersion,
    inputs: dict[str, Any],
    voice: BrandVoice | None,
    examples: list[Variant],
    *,
    facts: list[dict[str, Any]] | None = None,
    language: str = "en",
) -> list[dict[str, str]]:
    """``facts``: the job's grounding (``retrieve_facts``), shown in the request's turn, not the system
    message: the copy is meant to repeat them, which the prompt-leak filter allows only of visible turns.
    ``language``: the job's (``language_instruction``)."""
    system = version.system_prompt
    voice_text = brand_voice_instructions(voice)
    if voice_text:
        system += "\n\nBrand voice:\n" + voice_text
    if language_text := language_instruction(language):
        system += "\n\n" + language_text
    messages = [{"role": "system", "content": system}]
    # Approved copy for the same template becomes few-shot turns: the marketer's feedback
    # steers the next generations toward what they approved.
    for example in examples:
        messages.append({"role": "user", "content": render(version.prompt, example.job.inputs)})
        messages.append({"role": "assistant", "content": example.final_text})
    request = render(version.prompt, inputs)
    if facts_text := facts_instructions(facts or []):
        request = f"{facts_text}\n\n{request}"
    messages.append({"role": "user", "content": request})
    return messages


def knowledge_query(job: GenerationJob) -> str:
    """What the job's knowledge is retrieved for: its inputs (the product, the audience...) and the template's name."""
    values = " ".join(str(v) for v in job.inputs.values() if v not in (None, ""))
    return f"{job.template_version.template.name}: {values}".strip()


def retrieve_facts(job: GenerationJob) -> list[dict[str, Any]]:
    """The job's knowledge chunks, retrieved once and kept as ``job.grounding`` (a retry or a regenerated
    variant reuses them, and the fact check reads them). Labelled ``K1``, ``K2``... in prompt order."""
    if job.grounding:
        return list(job.grounding)
    filters = retrieval.filters_for(job.pk)
    # Brand voice examples are protected prompt material (generation.leakage guards them in the system
    # message); as facts they would sit in the visible turn, whose text outputs may repeat. A job that
    # asks for them by kind gets them.
    filters.setdefault("kind", PROMPT_KNOWLEDGE_KINDS)
    # The template's own budget (a short ad needs fewer facts than a newsletter), else the installation's.
    budget = job.template_version.knowledge_token_budget
    chunks = retrieval.retrieve(job.project, knowledge_query(job), filters=filters, token_budget=budget)
    job.grounding = [chunk.grounding(f"K{number}") for number, chunk in enumerate(chunks, start=1)]
    if job.grounding:
        GenerationJob.objects.filter(pk=job.pk).update(grounding=job.grounding)
    return list(job.grounding)


def approved_examples(
    project_id: Any, template_id: Any, limit: int = FEW_SHOT_EXAMPLES, *, language: str | None = None
) -> list[Variant]:
    """``language``: only examples written in it (an English example would pull a German job back to English)."""
    variants = Variant.objects.filter(
        approved=True, is_current=True, job__project_id=project_id, job__template_version__template_id=template_id
    )
    if language is not None:
        variants = variants.filter(job__language=language)
    return list(variants.select_related("job").order_by("-approved_at")[:limit])
