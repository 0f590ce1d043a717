"""Allow ``python -m gluebox``."""

from gluebox.cli import entry

raise SystemExit(entry())
