"""Domain errors: each becomes a polite reply (a template) in the user's language."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal the user should read: ``template`` renders it, ``params`` fill it."""

    def __init__(self, template: str, **params: Any) -> None:
        super().__init__(template)
        self.template = template
        self.params = params


class FieldError(Exception):
    """Intake validation: one message per bad field."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors))
        self.errors = errors
