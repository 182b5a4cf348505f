"""``interformer create-admin``: add an admin account to the app's database (and the hook that
registers ``interformer worker``, webapp/worker.py).

    interformer create-admin --username alice [--password ...] [--data-dir var]

The password comes from ``--password``, else ``INTERFORMER_ADMIN_PASSWORD``, else a prompt
(twice). The database is ``DATABASE_URL`` or SQLite in the data directory, migrated first.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_create_admin_parser(subparsers) -> None:
    p = subparsers.add_parser("create-admin", help="add an admin account to the app's database")
    p.add_argument("--username", required=True)
    p.add_argument("--password", default=None,
                   help="(default: $INTERFORMER_ADMIN_PASSWORD, else asked for)")
    p.add_argument("--data-dir", default=os.environ.get("INTERFORMER_DATA_DIR", str(REPO / "var")),
                   help="the app's data directory, for the default SQLite database (default: %(default)s)")
    p.set_defaults(func=run_create_admin)


def _password(args) -> str | None:
    if args.password:
        return args.password
    if os.environ.get("INTERFORMER_ADMIN_PASSWORD"):
        return os.environ["INTERFORMER_ADMIN_PASSWORD"]
    if not sys.stdin.isatty():
        print("error: give --password or INTERFORMER_ADMIN_PASSWORD (no terminal to ask on)", file=sys.stderr)
        return None
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("error: the passwords differ", file=sys.stderr)
        return None
    return first


def run_create_admin(args) -> int:
    from .accounts import AccountError, create_user
    from .db import Database, database_url
    from .models import Role

    password = _password(args)
    if password is None:
        return 2
    db = Database(database_url({"DATA_DIR": Path(args.data_dir)}))
    try:
        db.upgrade()
        with db.session() as s:
            user = create_user(s, args.username, password, Role.ADMIN)
            print(f"admin {user.username!r} created (user id {user.id})")
    except AccountError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    return 0
