"""The presentment currencies Stripe supports, and the one way every endpoint reads a currency.

Stripe refuses a currency outside its list with a 400 ``invalid_request_error`` naming
``currency``, whatever the endpoint; a client that passes ``xxx`` (or a typo such as ``eru``) must
see that refusal here too, rather than a PaymentIntent in a currency nothing can settle. The list
is Stripe's documented set of ISO 4217 codes for card payments (lower case, as Stripe writes them).
"""

from __future__ import annotations

from ._errors import invalid_request
from ._params import Params

#: ISO 4217 codes Stripe accepts as a presentment currency.
SUPPORTED = frozenset(
    [
        "aed",
        "afn",
        "all",
        "amd",
        "ang",
        "aoa",
        "ars",
        "aud",
        "awg",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bhd",
        "bif",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "byn",
        "bzd",
        "cad",
        "cdf",
        "chf",
        "clp",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "djf",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "fkp",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gnf",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "isk",
        "jmd",
        "jod",
        "jpy",
        "kes",
        "kgs",
        "khr",
        "kmf",
        "krw",
        "kwd",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mga",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "omr",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "pyg",
        "qar",
        "ron",
        "rsd",
        "rub",
        "rwf",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "shp",
        "sle",
        "sos",
        "srd",
        "std",
        "szl",
        "thb",
        "tjs",
        "tnd",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "ugx",
        "usd",
        "uyu",
        "uzs",
        "vnd",
        "vuv",
        "wst",
        "xaf",
        "xcd",
        "xcg",
        "xof",
        "xpf",
        "yer",
        "zar",
        "zmw",
    ]
)

#: Currencies whose amounts Stripe takes in whole units (no minor unit): ``amount=400`` is 400 yen.
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)

# Stripe's refusal lists what it supports; built once, USD first as Stripe lists it.
_LISTING = ", ".join(["usd", *sorted(SUPPORTED - {"usd"})])


def check(code: str, param: str) -> str:
    """``code`` lower-cased if Stripe supports it, else Stripe's 400 naming ``param``."""
    lowered = code.lower()
    if lowered not in SUPPORTED:
        raise invalid_request(
            f"Invalid currency: {code}. Stripe currently supports these currencies: {_LISTING}",
            param=param,
        )
    return lowered


def read(p: Params, name: str = "currency", *, required: bool = False) -> str | None:
    """The currency parameter ``name`` of a request, checked against :data:`SUPPORTED`."""
    value = p.text(name, required=required)
    return None if value is None else check(value, name)
