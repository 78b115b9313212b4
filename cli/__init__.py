"""The `omnidecide` command: thin verbs over public functions of `training`, `store` and `serving` (never their
internals). The top of the layers; nothing imports it."""
from __future__ import annotations

import logging
import sys

from rich.markup import escape

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
        # escaped: a message like "inside [ci_low, ci_high]" is text, not rich markup to swallow
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)
    except (IsADirectoryError, NotADirectoryError, PermissionError) as e:
        # a path given for a file that is a folder or unreadable, wherever it is opened: one line, not a traceback
        console.print(f"[bold red]error:[/] {escape(str(e.filename))}: {escape(e.strerror or str(e))}", highlight=False)
        sys.exit(2)
