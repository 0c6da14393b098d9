"""Shapes of ``/v1/imports``: an import as the API shows it, and the upload's form fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from npsd.imports.layouts import CHOICES

ImportState = Literal["queued", "running", "done", "failed"]


class ImportRowError(BaseModel):
    """One row that was not taken: its row number as a spreadsheet shows it (header rows count),
    the column at fault, and what is wrong."""

    row: int
    column: str
    issue: str


class ImportRead(BaseModel):
    """An import and its progress."""

    id: str
    state: ImportState = Field(description="queued, running, done or failed")
    layout: str = Field(description="The layout read: " + ", ".join(CHOICES[1:]))
    filename: str | None
    surveyId: str | None = Field(description="The survey the answers were attached to")
    scoreColumn: str | None = Field(description="The column the scores were read from")
    commentColumn: str | None = Field(description="The column the comments were read from, if any")
    dryRun: bool = Field(description="A dry run checks and counts every row and writes nothing")
    sizeBytes: int
    rowsTotal: int = Field(description="Data rows in the file")
    rowsDone: int = Field(description="Rows processed so far")
    created: int
    updated: int
    unchanged: int = Field(description="Rows whose answer was already there as it is")
    errorCount: int = Field(description="Rows not taken")
    errors: list[ImportRowError] = Field(description="The first 100 rows not taken, by row number")
    reason: str | None = Field(description="Why the import failed (state failed)")
    createdAt: str
    startedAt: str | None
    finishedAt: str | None


UPLOAD_FIELDS: dict[str, Any] = {
    "file": {
        "type": "string",
        "format": "binary",
        "description": "The export (CSV, or Delighted's JSON), at most NPSD_MAX_BODY_BYTES",
    },
    "from": {
        "type": "string",
        "enum": list(CHOICES),
        "default": "auto",
        "description": "The layout; auto recognises it by its headers",
    },
    "surveyId": {"type": "string", "description": "Attach every answer to this survey of yours"},
    "scoreColumn": {"type": "string", "description": "The column holding the 0-10 score (header text)"},
    "commentColumn": {"type": "string", "description": "The column holding the comment (header text)"},
    "dryRun": {
        "type": "boolean",
        "default": False,
        "description": "Check and count every row, write nothing",
    },
}

UPLOAD_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": UPLOAD_FIELDS,
                }
            }
        },
    }
}
