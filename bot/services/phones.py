"""Phone numbers: parsed, validated and kept in E.164; masked wherever they could be logged."""

from __future__ import annotations

import phonenumbers


class BadPhone(ValueError):
    pass


def normalise_phone(raw: str, region: str = "CN") -> str:
    """``+86 138-0013-8000`` / ``13800138000`` → ``+8613800138000``; BadPhone when not a phone."""
    text = (raw or "").strip()
    if not text or len(text) > 32:
        raise BadPhone("not a phone number")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise BadPhone("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise BadPhone("not a phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def same_phone(a: str, b: str, region: str = "CN") -> bool:
    try:
        return normalise_phone(a, region) == normalise_phone(b, region)
    except BadPhone:
        return False


def mask_phone(phone: str | None) -> str:
    """``+8613800138000`` → ``+86*******8000`` (for logs and audit)."""
    if not phone:
        return ""
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]
