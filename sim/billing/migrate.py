"""Create or migrate the store's schema: ``python -m sim.billing.migrate [--store-url URL]``.

What a deployment runs once per release, before the new API workers start (the deployment
checklist's "run database migration to add new user fields"): it creates every table and index
that is missing and adds each column a release added to an existing table, and does nothing else,
so running it again, or on two hosts at once, is harmless (PostgreSQL's run holds an advisory
lock; SQLite's takes the file's write lock). It prints what it created, or that the store was up
to date. The URL is ``--store-url``, else ``STORE_URL`` (``sim/billing/store_url.py``).

A SQLite file is also migrated whenever a store opens it, so this command is optional there;
a PostgreSQL store refuses to start on a database it has not migrated.

Exit status: 0 done (or nothing to do), 2 no URL, or one that cannot be used (one line on stderr
naming the setting).
"""

from __future__ import annotations

import argparse
import os

from .store_url import STORE_URL_ENV, StoreUrlError, migrate_store


def main(argv: list[str] | None = None) -> int:
    """Parse the URL, migrate, print what was created."""
    parser = argparse.ArgumentParser(
        prog="python -m sim.billing.migrate",
        description="Create or migrate the billing store's schema (idempotent).",
    )
    parser.add_argument(
        "--store-url",
        help=f"sqlite:///path or postgresql://user:password@host:port/db ({STORE_URL_ENV})",
    )
    args = parser.parse_args(argv)
    url = args.store_url or os.environ.get(STORE_URL_ENV)
    if not url:
        parser.error(f"no store to migrate: give --store-url or set {STORE_URL_ENV}")
    setting = "--store-url" if args.store_url else STORE_URL_ENV
    try:
        created = migrate_store(url, setting)
    except StoreUrlError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(f"created {', '.join(created)}" if created else "the schema is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
