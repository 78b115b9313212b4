"""The `omnidecide` command: thin verbs over public functions of `training`, `store` and `serving` (never their
internals). The top of the layers; nothing imports it."""
from __future__ import annotations

import logging
import sys

from omnidecide.models.errors import InputError


def main() -> None:
    """Run the CLI; input errors print one clear line (file/row/flag and reason) and exit 2, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from omnidecide.cli import allocator, churn, data, keys, lifecycle, recommender, report  # noqa: F401  (registers commands)
    from omnidecide.cli.app import app, console
    from omnidecide.cli.progress import progress_bar

    try:
        with progress_bar():
            app()
    except InputError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
