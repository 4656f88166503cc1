"""`rebuy keys`: create, list and revoke the service's API keys (`serving.auth`).

The key file is ``<REBUY_HOME>/api_keys.json`` or ``REBUY_API_KEYS_FILE``. ``create`` prints the
new key as the last line of its output, once: only its hash is stored.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from features.errors import RebuyError
from serving.auth import SCOPES, create_key, keys_file, read_keys, revoke_key

keys_app = typer.Typer(
    help="API keys of the service: create (shown once), list, revoke.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger(__name__)

Scope = StrEnum("Scope", {scope: scope for scope in SCOPES})


def _fail(message: str) -> typer.Exit:
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(2)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who uses the key, e.g. storefront-web.")],
    scope: Annotated[Scope, typer.Option("--scope", help="What the key may call.", case_sensitive=False)],
) -> None:
    """Create a key; it is printed once, as the last line (store it now: only its hash is kept)."""
    path = keys_file()
    try:
        record, token = create_key(path, name, scope=scope.value)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"created key {record.name!r} with scope {record.scope} in {path}; it is shown only now:",
        soft_wrap=True,
        highlight=False,
    )
    typer.echo(token)


@keys_app.command("list")
def list_command() -> None:
    """The keys of the key file: name, scope, creation time (never the keys themselves)."""
    path = keys_file()
    try:
        keys = read_keys(path)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"API keys in {path}")
    for column in ("name", "scope", "created_at"):
        table.add_column(column)
    for key in keys:
        table.add_row(key.name, key.scope, key.created_at)
    console.print(table)
    if not keys:
        console.print("no keys: create one with `rebuy keys create NAME --scope storefront|campaign|admin`")


@keys_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="Name of the key to revoke.")]) -> None:
    """Revoke a key: every running worker stops accepting it within about a second."""
    path = keys_file()
    try:
        record = revoke_key(path, name)
    except RebuyError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"revoked key {record.name!r} (scope {record.scope}) in {path}", highlight=False)
