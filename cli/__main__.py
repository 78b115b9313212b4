"""`python -m omnidecide.cli` runs the `omnidecide` command (for callers without the console script on PATH)."""
from omnidecide.cli import main

main()
