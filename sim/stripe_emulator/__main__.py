"""``python -m sim.stripe_emulator --port 12111``: serve the emulator on 127.0.0.1."""

from __future__ import annotations

import argparse

from ._emulator import StripeEmulator
from ._server import DEFAULT_PORT, random_webhook_secret, serve


def port_option(text: str) -> int:
    """argparse type of ``--port``: 0 (any free port) to 65535, refused as a bad option past
    that (the socket's bind had raised ``OverflowError`` with a traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is no TCP port: give 0 (any free one) to 65535")
    return port


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m sim.stripe_emulator",
        description="Offline Stripe test mode over HTTP, bound to 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=port_option, default=DEFAULT_PORT, help="port (0 = any free one)"
    )
    parser.add_argument("--seed", default="0", help="seed for ids and injected faults")
    parser.add_argument(
        "--webhook-url", help="POST every event of every API key to this URL, signed (see below)"
    )
    parser.add_argument(
        "--webhook-secret",
        help="secret signing the --webhook-url deliveries (default: a random one per run, "
        "printed at start); endpoints created with POST /v1/webhook_endpoints get their own",
    )
    args = parser.parse_args(argv)
    secret = args.webhook_secret or random_webhook_secret()
    emulator = StripeEmulator(seed=args.seed, webhook_secret=secret)
    serve(args.port, emulator=emulator, webhook_url=args.webhook_url)


if __name__ == "__main__":
    main()
