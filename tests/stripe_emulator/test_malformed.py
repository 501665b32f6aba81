"""Malformed requests get Stripe's 400 ``invalid_request_error`` envelope, never a hang-up.

Over HTTP the raw bytes go through a socket (no client library tidies them up first); in process
they go straight to :meth:`StripeEmulator.handle`. A Hypothesis test throws random form bodies at
the in-process path: whatever arrives, the answer is a JSON object with a 2xx or 4xx status.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.stripe_emulator import EmulatorServer, ManualClock, StripeEmulator

from .conftest import START

AUTH = {"Authorization": "Bearer sk_test_malformed"}
FORM = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
DEEP_KEY = "a" + "[a]" * 5000


@pytest.fixture
def server(emulator: StripeEmulator) -> Iterator[EmulatorServer]:
    """The emulator over HTTP on a free loopback port (no webhook thread)."""
    with EmulatorServer(emulator, port=0, deliver_webhooks=False) as running:
        yield running


def _exchange(server: EmulatorServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection; the status, headers and body of the one answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer after {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of the answer"
            body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def _post(
    body: bytes,
    *,
    length: bytes | None = None,
    extra: bytes = b"",
    content_type: bytes = b"application/x-www-form-urlencoded",
) -> bytes:
    declared = str(len(body)).encode() if length is None else length
    return (
        b"POST /v1/customers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer sk_test_malformed\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: " + declared + b"\r\n" + extra + b"\r\n" + body
    )


def _invalid_request(status: int, body: bytes) -> dict[str, object]:
    """Assert Stripe's 400 envelope and return its ``error``."""
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("non-UTF-8 body", _post(b"email=\xff\xfe")),
        ("key nested 5,000 brackets deep", _post(f"{DEEP_KEY}=1".encode())),
        ("Content-Length abc", _post(b"", length=b"abc")),
        ("negative Content-Length", _post(b"", length=b"-5")),
        ("Content-Length past any body", _post(b"", length=b"9" * 30)),
        ("Content-Length with 5,000 digits", _post(b"", length=b"7" * 5000)),
        ("conflicting Content-Lengths", _post(b"email=a", extra=b"Content-Length: 3\r\n")),
        ("chunked body", _post(b"", extra=b"Transfer-Encoding: chunked\r\n")),
        ("bad percent-escape", _post(b"email=%zz")),
        ("percent-escaped bytes that are not UTF-8", _post(b"email=%ff%fe")),
        ("a scalar and a hash under one name", _post(b"metadata=1&metadata[a]=2")),
        ("malformed bracket key", _post(b"metadata[a]b=1")),
        ("JSON body", _post(b'{"email": "a@b.c"}', content_type=b"application/json")),
    ],
)
def test_malformed_request_over_http_gets_a_400_envelope(
    server: EmulatorServer, name: str, raw: bytes
) -> None:
    """Each malformed request is answered 400 invalid_request_error as JSON, with a request id."""
    status, headers, body = _exchange(server, raw)
    _invalid_request(status, body)
    assert headers["content-type"] == "application/json"
    assert headers["request-id"].startswith("req_")


def test_oversized_body_is_refused_and_the_connection_still_answers(
    server: EmulatorServer, emulator: StripeEmulator
) -> None:
    """A body past the bound (sent in full) gets a 400, creates nothing, and leaves the connection
    usable for the next request."""
    big = b"description=" + b"x" * (2 << 20)
    follow_up = _post(b"email=a%40b.c")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_post(big) + follow_up)
        stream = sock.makefile("rb")
        statuses = []
        for _ in range(2):
            status_line = stream.readline()
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            statuses.append((int(status_line.split()[1]), stream.read(length)))
    error = _invalid_request(*statuses[0])
    assert "too large" in str(error["message"])
    assert statuses[1][0] == 200
    assert json.loads(statuses[1][1])["email"] == "a@b.c"
    assert len(emulator.stripe_client("sk_test_malformed").v1.customers.list().data) == 1


def test_body_shorter_than_its_content_length_is_refused(server: EmulatorServer) -> None:
    """A client that announces more bytes than it sends, then stops writing, gets a 400."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_post(b"email=a", length=b"50"))
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    _invalid_request(status, answer.partition(b"\r\n\r\n")[2])


def test_http_layer_refusals_are_json_too(server: EmulatorServer) -> None:
    """Oversized header lines are refused by the HTTP layer in Stripe's envelope, not HTML."""
    raw = b"GET /v1/customers HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n"
    status, headers, body = _exchange(server, raw)
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_unknown_method_is_stripes_404(server: EmulatorServer) -> None:
    """PUT has no route in Stripe's v1 API: a 404 envelope, as Stripe answers, not a 501."""
    status, _, body = _exchange(
        server, b"PUT /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_x\r\n\r\n"
    )
    assert status == 404
    assert "Unrecognized request URL (PUT: /v1/customers)" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"email=\xff\xfe", "not valid UTF-8"),
        (f"{DEEP_KEY}=1".encode(), "nesting is too deep"),
        (b"email=%zz", "percent-encoding"),
        (b"email=%C3%28", "not UTF-8"),
        (b"x" * (1 << 20) + b"x", "too large"),
    ],
)
def test_malformed_body_in_process(emulator: StripeEmulator, body: bytes, message: str) -> None:
    """The in-process path refuses the same bodies with the same envelope."""
    response = emulator.handle("post", "/v1/customers", FORM, body)
    assert message in str(_invalid_request(response.status, response.body)["message"])


def test_non_form_content_type_is_refused_in_process(emulator: StripeEmulator) -> None:
    """A JSON body is not silently read as an empty form (which would create a blank customer)."""
    headers = {**AUTH, "Content-Type": "application/json"}
    response = emulator.handle("post", "/v1/customers", headers, b'{"email": "a@b.c"}')
    assert "Content-Type" in str(_invalid_request(response.status, response.body)["message"])
    assert emulator.stripe_client("sk_test_malformed").v1.customers.list().data == []


def test_form_content_type_with_charset_is_accepted(emulator: StripeEmulator) -> None:
    """``; charset=utf-8`` after the form type is still a form."""
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    response = emulator.handle("post", "/v1/customers", headers, "email=a%40b.c")
    assert response.status == 200 and json.loads(response.body)["email"] == "a@b.c"


def test_malformed_query_string_is_refused(emulator: StripeEmulator) -> None:
    """A GET's query string is decoded as strictly as a body: the bad escape itself is named."""
    response = emulator.handle("get", "/v1/customers?limit=%zz", AUTH)
    assert "percent-encoding" in str(_invalid_request(response.status, response.body)["message"])


def test_duplicate_scalar_key_keeps_the_last_value(emulator: StripeEmulator) -> None:
    """``email=a&email=b`` reads as its last value, as Stripe's form parser does."""
    response = emulator.handle("post", "/v1/customers", FORM, "email=first&email=second")
    assert json.loads(response.body)["email"] == "second"


def test_list_of_hashes_with_empty_brackets(emulator: StripeEmulator) -> None:
    """``a[][k]=..`` builds a list of hashes, a new hash starting when a key repeats."""
    from sim.stripe_emulator._form import decode

    assert decode("items[][price]=a&items[][quantity]=2&items[][price]=b") == {
        "items": [{"price": "a", "quantity": "2"}, {"price": "b"}]
    }


def test_expansion_deeper_than_four_levels_is_refused(emulator: StripeEmulator) -> None:
    """Stripe expands four levels at most; a longer path (here a self-referencing cycle) is a 400
    instead of a recursion as deep as the path is long."""
    client = emulator.stripe_client("sk_test_malformed")
    pi = client.v1.payment_intents.create(
        params={"amount": 500, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
    )
    path = ".".join(["latest_charge", "payment_intent"] * 2000)
    response = emulator.handle("get", f"/v1/payment_intents/{pi.id}?expand[]={path}", AUTH)
    assert "4 levels" in str(_invalid_request(response.status, response.body)["message"])


# -- random bodies --------------------------------------------------------------------------------


def _populated() -> tuple[StripeEmulator, list[str]]:
    """An emulator holding one of each object the random bodies may name, and their ids."""
    emulator = StripeEmulator(clock=ManualClock(START), seed=0)
    client = emulator.stripe_client("sk_test_malformed")
    customer = client.v1.customers.create(params={"email": "a@b.c"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    pi = client.v1.payment_intents.create(
        params={"amount": 900, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
    )
    product = client.v1.products.create(params={"name": "Basic"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 500,
            "currency": "eur",
            "recurring": {"interval": "month"},
        }
    )
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    return emulator, [customer.id, pm.id, pi.id, product.id, price.id, clock.id]


_BASE, _IDS = _populated()
_SNAPSHOT = _BASE.snapshot()

#: For each endpoint: a valid body's pairs (ids filled in from ``_IDS``), which the random bodies
#: keep a random part of, so they reach the handlers' own checks and not only name validation.
_VALID: dict[str, list[tuple[str, str]]] = {
    "/v1/customers": [("email", "a@b.c"), ("metadata[k]", "v"), ("test_clock", "{clock}")],
    "/v1/payment_intents": [
        ("amount", "2000"),
        ("currency", "eur"),
        ("customer", "{customer}"),
        ("payment_method", "{pm}"),
        ("confirm", "true"),
        ("off_session", "true"),
    ],
    "/v1/payment_methods": [("type", "card"), ("card[number]", "4242424242424242")],
    "/v1/prices": [
        ("product", "{product}"),
        ("unit_amount", "500"),
        ("currency", "jpy"),
        ("recurring[interval]", "month"),
        ("recurring[interval_count]", "2"),
    ],
    "/v1/products": [("name", "Pro"), ("id", "prod_pro")],
    "/v1/refunds": [("payment_intent", "{pi}"), ("amount", "100"), ("currency", "eur")],
    "/v1/subscriptions": [
        ("customer", "{customer}"),
        ("items[0][price]", "{price}"),
        ("items[0][quantity]", "2"),
        ("currency", "eur"),
    ],
    "/v1/webhook_endpoints": [("url", "https://a.test/h"), ("enabled_events[]", "*")],
    "/v1/test_helpers/test_clocks": [("frozen_time", str(START)), ("name", "c")],
    f"/v1/test_helpers/test_clocks/{_IDS[5]}/advance": [("frozen_time", str(START + 86_400 * 40))],
    f"/v1/payment_intents/{_IDS[2]}": [("amount", "700"), ("currency", "usd")],
}
_NAMED = dict(zip(("customer", "pm", "pi", "product", "price", "clock"), _IDS, strict=True))
_segment = st.one_of(
    st.sampled_from(["", "0", "1", "k", "price", "quantity", "interval", "number", "9" * 30]),
    st.text(max_size=6),
)
_value = st.one_of(
    st.sampled_from(
        ["", "true", "false", "eur", "JPY", "xxx", "pm_card_visa", "card", "month", "year", "1",
         "-1", "0", "2000", "1e9", "9" * 30, "4242424242424242", "https://a.test/h", "*", "²",
         *_IDS]
    ),
    st.text(max_size=12),
)  # fmt: skip


@st.composite
def _request(draw: st.DrawFn) -> tuple[str, str | bytes]:
    """A path and a body: part of a valid body, random pairs mixed in, sometimes raw bytes."""
    path = draw(st.sampled_from(sorted(_VALID)))
    pairs = [
        (key, value.format(**_NAMED))
        for key, value in _VALID[path]
        if draw(st.booleans()) or draw(st.booleans())
    ]
    heads = sorted({key.partition("[")[0] for key, _ in _VALID[path]})
    for _ in range(draw(st.integers(0, 4))):
        head = draw(st.sampled_from(heads) | st.text(max_size=6))
        segments = draw(st.lists(_segment, max_size=3))
        key = head + "".join(f"[{segment}]" for segment in segments)
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(_value)))
    body = "&".join(f"{key}={value}" for key, value in draw(st.permutations(pairs)))
    kind = draw(st.sampled_from(["text", "bytes", "random bytes"]))
    if kind == "bytes":
        return path, body.encode()
    if kind == "random bytes":
        return path, body.encode() + draw(st.binary(max_size=16))
    return path, body


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=_request())
def test_random_form_bodies_get_a_json_answer(request: tuple[str, str | bytes]) -> None:
    """Whatever the body, the in-process answer is a JSON object with a 2xx or 4xx status."""
    path, body = request
    _BASE.restore(_SNAPSHOT)
    response = _BASE.handle("post", path, FORM, body)
    assert 200 <= response.status < 300 or 400 <= response.status < 500, response.body
    assert isinstance(json.loads(response.body), dict)
    assert re.fullmatch(r"req_\w+", response.headers["Request-Id"])


def test_form_encode_writes_what_stripe_python_writes_and_decode_reads_it_back() -> None:
    """``form_encode`` is stripe-python's encoding, byte for byte (so a client without the library
    sends the emulator the same bodies), and ``decode`` inverts it, values as strings."""
    from urllib.parse import urlencode

    from stripe._encode import _api_encode

    from sim.stripe_emulator import form_encode
    from sim.stripe_emulator._form import decode, form_values

    params = {
        "amount": 1_000,
        "confirm": True,
        "off_session": False,
        "description": None,
        "metadata": {"user_id": "u 1&2", "note": "50% [off]"},
        "items": [{"price": "price_1", "quantity": 2}],
        "lookup_keys": ["a", "b"],
    }
    assert form_values(params) == decode(form_encode(params))
    library = urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")
    assert form_encode(params) == library
    assert decode(form_encode(params)) == {
        "amount": "1000",
        "confirm": "true",
        "off_session": "false",
        "metadata": {"user_id": "u 1&2", "note": "50% [off]"},
        "items": [{"price": "price_1", "quantity": "2"}],
        "lookup_keys": ["a", "b"],
    }


#: Text a client can send: any character but a lone surrogate (which no UTF-8 body can hold;
#: ``encode`` refuses it, see the test below).
_TEXT = st.characters(blacklist_categories=("Cs",))
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(_TEXT, max_size=5))
_KEYS = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="[]"),
            min_size=1, max_size=4),
    st.integers(0, 3).map(str),
)  # fmt: skip
_PARAMS = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(_KEYS, _PARAMS, max_size=4))
def test_form_values_is_what_decode_reads_of_form_encode(params: dict[str, object]) -> None:
    """For any parameters, the values handed to the emulator directly are exactly what it reads
    from their text: nothing changes for a client that skips the text."""
    from sim.stripe_emulator import form_encode
    from sim.stripe_emulator._form import decode, form_values

    assert form_values(params) == decode(form_encode(params))


@pytest.mark.parametrize("params", [{"\ud800": "x"}, {"a": "\udfff"}, {"a": {"\ud800": False}}])
def test_a_lone_surrogate_cannot_be_encoded(params: dict[str, object]) -> None:
    """A lone surrogate is not text any body can carry: encoding refuses it (a ValueError,
    UnicodeEncodeError) instead of sending something Stripe would read differently."""
    from sim.stripe_emulator import form_encode

    with pytest.raises(UnicodeEncodeError):
        form_encode(params)
