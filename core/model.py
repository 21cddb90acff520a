"""The one base of every typed record the lab writes to disk or sends between processes.

Strict, frozen and closed: a missing, extra or mistyped field is an error where the record is made or read, never a
surprise later. Records that cross a process boundary are read back with `model_validate_json` (JSON's arrays then
become the tuples a strict model asks for).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
