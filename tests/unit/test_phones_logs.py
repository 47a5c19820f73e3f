import logging

import pytest

from bot.logs import RedactingFilter, redact
from bot.services.phones import BadPhone, mask_phone, normalise_phone, same_phone


@pytest.mark.parametrize(
    "raw", ["13800138000", "+86 138 0013 8000", "+86-138-0013-8000", "0086 13800138000"]
)
def test_phone_numbers_normalise_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


@pytest.mark.parametrize("raw", ["", "abc", "12", "+1 555", "1" * 40])
def test_not_a_phone(raw: str) -> None:
    with pytest.raises(BadPhone):
        normalise_phone(raw)


def test_same_phone_and_mask() -> None:
    assert same_phone("138 0013 8000", "+8613800138000")
    assert not same_phone("13800138000", "13800138001")
    assert mask_phone("+8613800138000") == "+86*******8000"


def test_logs_never_carry_phones_or_tokens(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info(
            "calling %s with token %s",
            "+86 138 0013 8000",
            "123456789:AAEhBOweik9ai0Qa-test-token-xxxxxxxx",
        )
    assert "138" not in caplog.text
    assert "AAEh" not in caplog.text
    assert redact("job FB000012 at 2026-12-01 09:00") == "job FB000012 at 2026-12-01 09:00"
