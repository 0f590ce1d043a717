"""Allow ``python -m gluebox``."""

from gluebox.cli import main

raise SystemExit(main())
