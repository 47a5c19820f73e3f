import pytest

from bot.core.callbacks import Callback, CallbackTooLong, cb, unpack


def test_pack_and_unpack() -> None:
    data = cb("off", 42, "acc")
    assert data == "off:42:acc"
    assert unpack(data) == Callback("off", 42, "acc")
    assert unpack(cb("job", 7, "asg", 3)) == Callback("job", 7, "asg", "3")


def test_callback_data_longer_than_64_bytes_is_refused_on_pack() -> None:
    with pytest.raises(CallbackTooLong):
        cb("job", 1, "x", "y" * 60)


@pytest.mark.parametrize(
    "data",
    [
        "",
        "job",
        "job:abc:acc",
        "job:1",
        "a:b:c:d:e",
        "job:1:acc:'; drop",
        "x" * 65,
        "job:-1:acc",
        "job:1::",
    ],
)
def test_forged_or_malformed_data_decodes_to_nothing(data: str) -> None:
    assert unpack(data) is None
