"""The base of every recipe section: unknown keys are errors, assignments are checked."""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _switch_words(cls, data):
        # YAML reads a bare on/off as true/false; where the choices are words, the word was meant.
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                word = {True: "on", False: "off"}.get(value) if isinstance(value, bool) else None
                if word and field is not None and word in get_args(field.annotation):
                    data = {**data, name: word}
        return data

