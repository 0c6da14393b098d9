"""Reading submitted forms: text fields as strings, whatever a client sends."""

from __future__ import annotations

from starlette.datastructures import FormData, UploadFile


def form_text(form: FormData, name: str) -> str:
    """The text of field ``name``: "" when missing, or when a file was sent in its place."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def form_file(form: FormData, name: str) -> UploadFile | None:
    """The file uploaded as ``name``, None when none was chosen."""
    value = form.get(name)
    if isinstance(value, UploadFile) and value.filename:
        return value
    return None
