"""Answers as JSON values (``handle_parsed``) are what a client parses from the text answers."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.stripe_emulator import Fault, Faults, ManualClock, StripeEmulator, form_values
from sim.stripe_emulator._render import json_values

START = 1_767_225_600
AUTH = {"Authorization": "Bearer sk_test_parsed"}

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


@given(_JSON)
def test_json_values_is_what_a_parser_reads_of_the_text(value: object) -> None:
    """Any JSON-ready value (tuples included, which the text makes arrays) copies to exactly
    what ``json.loads`` reads of ``json.dumps``: the same values and the same types."""
    copied = json_values(value)
    parsed = json.loads(json.dumps(value))
    assert copied == parsed
    assert json.dumps(copied) == json.dumps(parsed)
    assert _types(copied) == _types(parsed)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)


class _Level(enum.IntEnum):
    LOW = 1


def test_json_values_is_a_private_copy_and_plain_json() -> None:
    """Every object and array is new (changing the copy leaves the original as it was), and a
    value of another type is what its text reads as (an IntEnum is a plain int)."""
    original = {"a": {"b": [1, {"c": "d"}]}, "t": ("x",), "level": _Level.LOW}
    copied = json_values(original)
    copied["a"]["b"][1]["c"] = "changed"
    copied["a"]["b"].append(2)
    copied["t"].append("y")
    assert original == {"a": {"b": [1, {"c": "d"}]}, "t": ("x",), "level": _Level.LOW}
    assert type(copied["level"]) is int and copied["level"] == 1


def _twins() -> tuple[StripeEmulator, StripeEmulator]:
    """Two emulators with the same seed: one answers in text, the other in values."""
    return (
        StripeEmulator(clock=ManualClock(START), seed=3),
        StripeEmulator(clock=ManualClock(START), seed=3),
    )


_CHARGE = {
    "amount": 1000,
    "currency": "eur",
    "customer": "{customer}",
    "payment_method": "{card}",
    "confirm": True,
    "off_session": True,
    "metadata": {"attempt": "1"},
}
_DECLINED = {
    "amount": 1000,
    "currency": "eur",
    "confirm": True,
    "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
}
#: A conversation covering answers, a card error, a refusal, replays, a key reused with other
#: parameters, an expanded answer and a list page.
_CALLS: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("post", "/v1/customers", {"email": "a@example.com", "metadata": {"user_id": "u1"}}, "c1"),
    ("post", "/v1/payment_methods/pm_card_visa/attach", {"customer": "{customer}"}, None),
    ("post", "/v1/payment_intents", _CHARGE, "k1"),
    ("post", "/v1/payment_intents", _DECLINED, "k2"),
    ("post", "/v1/payment_intents", _CHARGE, "k1"),
    ("post", "/v1/payment_intents", _DECLINED, "k2"),
    ("post", "/v1/payment_intents", {"amount": 500, "currency": "eur"}, "k3"),
    ("post", "/v1/payment_intents", {"amount": 600, "currency": "eur"}, "k3"),
    ("post", "/v1/payment_intents", {"amount": 5, "currency": "eur"}, "k4"),
    ("get", "/v1/payment_methods/{card}", {"expand": ["customer"]}, None),
    ("get", "/v1/payment_intents", {"customer": "{customer}", "limit": 2}, None),
    ("get", "/v1/payment_methods/pm_missing", {}, None),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value.format(**ids) if isinstance(value, str) else value


def _headers(key: str | None) -> dict[str, str]:
    return AUTH if key is None else {**AUTH, "Idempotency-Key": key}


def test_values_answers_are_the_parsed_text_answers() -> None:
    """The same calls to two emulators of one seed, one answering text and one values: every
    status, header and answer agrees with the text parsed (ids, errors and replays included)."""
    text, values = _twins()
    ids: dict[str, str] = {}
    for method, path, params, key in _CALLS:
        form = form_values(_fill(params, ids))
        url = _fill(path, ids)
        sent = text.handle(method, url, _headers(key), form=form)
        got = values.handle_parsed(method, url, _headers(key), form=form)
        assert (got.status, got.headers, got.data) == (
            sent.status, sent.headers, json.loads(sent.body)
        )  # fmt: skip
        if path == "/v1/customers":
            ids["customer"] = got.data["id"]
        if path.endswith("/attach"):
            ids["card"] = got.data["id"]
    assert got.status == 404  # the conversation ran to its end, refusals included


def test_a_replay_answers_the_first_answer_whichever_way_it_is_read() -> None:
    """A key first answered in values replays the same JSON as text, and the other way round;
    changing a values answer changes neither the replay nor the stored object."""
    params = {"amount": 1000, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
    first = StripeEmulator(clock=ManualClock(START), seed=1)
    parsed = first.handle_parsed("post", "/v1/payment_intents", _headers("k"),
                                 form=form_values(params))  # fmt: skip
    expected = json.loads(json.dumps(parsed.data))
    parsed.data["metadata"]["x"] = "changed"
    parsed.data["status"] = "changed"
    again = first.handle("post", "/v1/payment_intents", _headers("k"), form=form_values(params))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert json.loads(again.body) == expected
    assert first.object(expected["id"])["status"] == "succeeded"
    assert first.object(expected["id"])["metadata"] == {}
    replayed = first.handle_parsed("post", "/v1/payment_intents", _headers("k"),
                                   form=form_values(params))  # fmt: skip
    assert replayed.data == expected
    replayed.data["status"] = "changed"
    assert first.handle_parsed("post", "/v1/payment_intents", _headers("k"),
                               form=form_values(params)).data == expected  # fmt: skip

    second = StripeEmulator(clock=ManualClock(START), seed=1)
    sent = second.handle("post", "/v1/payment_intents", _headers("k"), form=form_values(params))
    replayed = second.handle_parsed("post", "/v1/payment_intents", _headers("k"),
                                    form=form_values(params))  # fmt: skip
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.data == json.loads(sent.body) == expected


def test_a_declined_card_error_replays_as_it_was_first_answered() -> None:
    """A saved card error (402 with the declined intent in it) is kept apart from the answer
    sent: changing the sent error changes nothing that is replayed."""
    params = {"amount": 1000, "currency": "eur", "confirm": True,
              "payment_method": "pm_card_chargeDeclined"}  # fmt: skip
    emulator = StripeEmulator(clock=ManualClock(START), seed=1)
    first = emulator.handle_parsed("post", "/v1/payment_intents", _headers("k"),
                                   form=form_values(params))  # fmt: skip
    assert first.status == 402
    expected = json.loads(json.dumps(first.data))
    first.data["error"]["payment_intent"]["status"] = "changed"
    again = emulator.handle_parsed("post", "/v1/payment_intents", _headers("k"),
                                   form=form_values(params))  # fmt: skip
    assert (again.status, again.data) == (402, expected)


@pytest.mark.parametrize(("fault", "status"), [(Fault.SERVER_ERROR, 500), (Fault.RATE_LIMIT, 429)])
def test_injected_errors_are_read_as_their_text(fault: Fault, status: int) -> None:
    """An injected 500 or 429 answers the values of its envelope's text, a copy each time."""
    text, values = _twins()
    for emulator in (text, values):
        emulator.faults = Faults(schedule={1: fault, 2: fault})
    sent = text.handle("get", "/v1/customers", AUTH, form={})
    got = values.handle_parsed("get", "/v1/customers", AUTH, form={})
    assert (got.status, got.headers, got.data) == (status, sent.headers, json.loads(sent.body))
    got.data["error"]["message"] = "changed"
    assert values.handle_parsed("get", "/v1/customers", AUTH, form={}).data == json.loads(sent.body)


@pytest.mark.parametrize("fault", [Fault.DROP_REQUEST, Fault.DROP_RESPONSE])
def test_a_dropped_answer_has_no_values(fault: Fault) -> None:
    """No answer came back: nothing to read, as the text path has no body."""
    emulator = StripeEmulator(clock=ManualClock(START), seed=1, faults=Faults(schedule={1: fault}))
    got = emulator.handle_parsed("get", "/v1/customers", AUTH, form={})
    assert (got.status, got.data, got.headers, got.dropped) == (0, None, {}, True)
