"""`omnidecide keys create|list|revoke`: API keys of the HTTP service (stored by hash; see store/keys.py)."""
from __future__ import annotations

import typer
from rich.table import Table

from omnidecide.cli.app import app, console

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys of the HTTP service.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create(scope: str = typer.Option(..., "--scope", help="read | ingest | admin (admin may do everything)"),
           name: str = typer.Option(None, "--name", help="Name shown in logs and `keys list` (default: scope-<hash>)")) -> None:
    """Make a key; only its hash is stored. The key is printed once, as the last line: keep it."""
    from omnidecide.store import keys

    key, secret = keys.create(scope, name)
    console.print(f"key {key.name!r} (scope {key.scope}) stored as a hash in {keys.keys_file()}; a running service "
                  "accepts it within seconds. It cannot be shown again:", highlight=False)
    print(secret)


@keys_app.command("list")
def list_keys(env: bool = typer.Option(False, "--env", help="Print an OMNIDECIDE_API_KEYS value (hashes) for containers")) -> None:
    """Every key the service accepts: name, scope, created, where it is configured (never the key itself)."""
    from omnidecide.store import keys

    found = keys.load()
    if env:
        print(",".join(f"{k.name}:{k.scope}:{k.sha256}" for k in found))
        return
    table = Table("name", "scope", "created", "source", "sha256")
    for k in found:
        table.add_row(k.name, k.scope, k.created, k.source, k.sha256[:12] + "...")
    console.print(table if found else f"no keys in {keys.keys_file()} or OMNIDECIDE_API_KEYS: the service runs open "
                                      "and only on 127.0.0.1")


@keys_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="the key's name (see `keys list`)")) -> None:
    """Remove a key; a running service refuses it within seconds."""
    from omnidecide.store import keys

    k = keys.revoke(name)
    console.print(f"revoked {k.name!r} (scope {k.scope})", highlight=False)
