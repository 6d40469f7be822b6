"""A saved conversation as a file: JSON (every message, each reply with its model and stats) or
Markdown (each reply under its model's name, with its stats line and the comparisons made)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from localllm.chat.conversation_records import Conversation, SavedComparison, stats_from_dict
from localllm.chat.report import stats_line


def to_json(conv: Conversation) -> str:
    """The conversation as JSON: every message, and each reply with its model and stats."""
    doc = {"format": "localllm-conversation", "version": 1, "id": conv.id, "title": conv.title,
           "created": conv.created, "updated": conv.updated, "model": conv.model,
           "system_prompt": conv.system_prompt,
           "messages": [dataclasses.asdict(t) for t in conv.turns],
           "comparisons": [dataclasses.asdict(c) for c in conv.comparisons]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_markdown(conv: Conversation) -> str:
    """The conversation as Markdown: each reply under its model's name, with its stats line."""
    out = [f"# {conv.title or 'Untitled conversation'}", "",
           f"- Created: {conv.created}", f"- Updated: {conv.updated}"]
    if conv.model:
        out.append(f"- Model: {model_label(conv.model)}")
    if conv.system_prompt:
        out.append(f"- System prompt: {conv.system_prompt.strip()}")
    pending = list(conv.comparisons)  # each goes after the message it followed
    out += _comparisons_markdown([c for c in pending if c.after_seq <= 0])
    pending = [c for c in pending if c.after_seq > 0]
    for t in conv.turns:
        if t.role == "assistant":
            out += ["", f"## Assistant · {model_label(t.model) if t.model else 'model'}"]
        else:
            out += ["", f"## {t.role.capitalize()}"]
        out += ["", t.content.rstrip() or "*(empty)*"]
        stats = stats_from_dict(t.stats)
        if stats is not None:
            note = "" if t.status == "ok" else f" · {t.status}"
            out += ["", f"*{stats_line(stats)}{note}*"]
        elif t.status != "ok":
            out += ["", f"*{t.status}*"]
        out += _comparisons_markdown([c for c in pending if c.after_seq <= t.seq])
        pending = [c for c in pending if c.after_seq > t.seq]
    out += _comparisons_markdown(pending)  # after a message since removed (a regenerated reply)
    return "\n".join(out) + "\n"


def write_atomically(path: Path, text: str) -> Path:
    """Write text to path through a temporary file in the same folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _comparisons_markdown(comparisons: list[SavedComparison]) -> list[str]:
    """Each comparison as a section: the prompt, then each model's reply with its figures or error."""
    out: list[str] = []
    for c in comparisons:
        out += ["", f"## Comparison · {len(c.results)} models", "", "> " + c.prompt.strip().replace("\n", "\n> ")]
        for r in c.results:
            name = r.get("model_name") or r.get("spec") or "model"
            details = ", ".join(str(x) for x in (r.get("quant"), r.get("spec")) if x and x != name)
            out += ["", f"### {name}" + (f" ({details})" if details else "")]
            if r.get("error"):
                out += ["", f"*Error: {r['error']}*"]
            elif r.get("status") == "cancelled":
                out += ["", "*cancelled before it ran*"]
                continue
            if r.get("text") or not r.get("error"):
                out += ["", (r.get("text") or "").rstrip() or "*(empty)*"]
            stats = stats_from_dict(r.get("stats"))
            if stats is not None:
                status = r.get("status") or "ok"
                note = "" if status in ("ok", "error") else f" · {status}"
                out += ["", f"*{stats_line(stats)}{note}*"]
    return out


def model_label(model: dict[str, Any]) -> str:
    """'SmolLM2 (Q4_1, llama_cpp)' from a saved ModelInfo dict."""
    details = [str(model[k]) for k in ("quant", "backend") if model.get(k)]
    name = model.get("name") or model.get("path") or "model"
    return f"{name} ({', '.join(details)})" if details else str(name)


def export_filename(summary_or_conv: Any, suffix: str, tag: str | None = None) -> str:
    """A file name for an export: the title made safe, then the id ('lighthouses-12.md'), or `tag` for a
    conversation that is not saved (it has no id of its own)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", summary_or_conv.title or "conversation").strip("-").lower()[:40]
    return f"{slug or 'conversation'}-{summary_or_conv.id if tag is None else tag}{suffix}"

