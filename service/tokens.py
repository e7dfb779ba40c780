"""`python -m service.tokens`: create, list and revoke API tokens.

    python -m service.tokens create --owner alice [--name laptop]   # prints the token, once
    python -m service.tokens list [--owner alice]
    python -m service.tokens revoke TOKEN_ID

Works on the database of DROPTUNE_DATABASE_URL (or DROPTUNE_DATA_DIR's SQLite file), migrating it
first, so it can run before the service ever has.
"""

from __future__ import annotations

import argparse
import sys

from store import auth, migrate
from store.config import get_settings
from store.db import Database
from store.errors import InputError, NotFoundError
from store.tables import ApiToken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.tokens", description="Manage droptune's API tokens.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a token for an owner and print it (shown only once)")
    create.add_argument("--owner", required=True, help="who the token's datasets and jobs belong to")
    create.add_argument("--name", default="", help="a label, e.g. the machine it is for")
    create.add_argument("--quiet", action="store_true", help="print only the token")
    create.add_argument("--operator", action="store_true", help="may also read /metrics, which sums every owner's jobs")
    listing = commands.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--owner", help="only this owner's tokens")
    revoke = commands.add_parser("revoke", help="revoke a token by its id; it stops working at once")
    revoke.add_argument("token_id")
    first = commands.add_parser("first", help="create a token for the local owner only if none exists yet")
    first.add_argument("--quiet", action="store_true", help="print only the token")
    args = parser.parse_args(argv)

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            if args.command == "create":
                new = auth.create_token(session, args.owner, args.name, operator=args.operator)
                return _print_new(new, args.quiet)
            if args.command == "first":
                if auth.count_tokens(session):
                    return 0
                # The installer's: an operator, so that /metrics works from the start.
                return _print_new(auth.create_token(session, "local", "first token", operator=True), args.quiet)
            if args.command == "list":
                _print_list(auth.list_tokens(session, args.owner))
                return 0
            row = auth.revoke_token(session, args.token_id)
            print(f"revoked {row.id} ({row.owner}, {row.name})")
            return 0
    except (InputError, NotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _print_new(new: auth.NewToken, quiet: bool) -> int:
    if quiet:
        print(new.token)
        return 0
    print(f"token {new.id} for owner {new.owner!r} ({new.name}); keep it, it is not shown again:")
    print(f"\n    {new.token}\n")
    print("Send it as 'Authorization: Bearer <token>', or paste it into the dashboard's sign-in page.")
    return 0


def _print_list(rows: list[ApiToken]) -> None:
    print(f"{'id':<14}{'owner':<20}{'name':<24}{'created':<22}{'last used':<22}{'revoked':<22}operator")
    for row in rows:
        created = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
        used = row.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if row.last_used_at else "never"
        revoked = row.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if row.revoked_at else "-"
        operator = "yes" if row.operator else "no"
        print(f"{row.id:<14}{row.owner:<20}{row.name[:22]:<24}{created:<22}{used:<22}{revoked:<22}{operator}")


if __name__ == "__main__":
    sys.exit(main())
