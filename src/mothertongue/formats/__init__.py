"""Source formats: one adapter per file, each registered here by name.

    mothertongue ls formats

An adapter reads one source and yields `Conversation` / `PreferencePair` / `Document` records. It reports a
bad record through `report.bad(...)` (which stops the run or counts it, per `ingest.on_error`)
and a record it filters on purpose through `report.skip(...)`; nothing disappears silently.
"""

from __future__ import annotations

from mothertongue.formats.base import (
    Adapter,
    IngestReport,
    detect_format,
    detect_records,
    sample_records,
    stable_id,
)
from mothertongue.registry import Registry

FORMATS = Registry("source format", entry_point_group="mothertongue.formats")
_F = "mothertongue.formats"
FORMATS.register("text", f"{_F}.text:TextAdapter", "instruction#response lines, `_EVAL_` marker")
FORMATS.register("alpaca", f"{_F}.alpaca:AlpacaAdapter", "{instruction, input, output}; JSON list or JSONL")
FORMATS.register("dolly", f"{_F}.dolly:DollyAdapter", "{instruction, context, response, category}")
FORMATS.register(
    "natural_instructions", f"{_F}.natural_instructions:NaturalInstructionsAdapter",
    "task files: Definition, Positive Examples, Instances (one conversation per instance)",
)
FORMATS.register(
    "unnatural", f"{_F}.unnatural:UnnaturalAdapter", "instruction + instances (+ reformulations); core/full"
)
FORMATS.register(
    "oasst", f"{_F}.oasst:OasstAdapter", "OpenAssistant OASST1/2: flat message rows or nested trees; threads + pairs"
)
FORMATS.register("sharegpt", f"{_F}.sharegpt:ShareGPTAdapter", "conversations of {from, value}; role map, tools")
FORMATS.register("openai", f"{_F}.openai:OpenAIAdapter", "OpenAI chat JSONL {messages: [{role, content}]}")
FORMATS.register(
    "preference", f"{_F}.preference:PreferenceAdapter", "{prompt, chosen, rejected}: strings or message lists"
)
FORMATS.register(
    "tabular", f"{_F}.tabular:TabularAdapter", "CSV, Parquet or JSON rows with a column mapping (options.columns)"
)
FORMATS.register(
    "documents", f"{_F}.documents:DocumentsAdapter",
    "plain documents to translate / train on as native text: JSONL/Parquet text column, .txt (options.separator)",
)
FORMATS.register(
    "hf", f"{_F}.hf:HFAdapter", "Hugging Face dataset: hub id, save_to_disk or parquet folder (options.split)"
)

# Most specific first: dolly before alpaca (both have `instruction`), preference before openai.
DETECT_ORDER = [
    "hf", "natural_instructions", "oasst", "unnatural", "preference", "sharegpt", "openai",
    "dolly", "alpaca", "tabular", "text",
]

__all__ = [
    "FORMATS", "DETECT_ORDER", "Adapter", "IngestReport", "detect_format", "detect_records",
    "sample_records", "stable_id",
]
