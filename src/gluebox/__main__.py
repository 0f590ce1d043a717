"""Allow ``python -m gluebox``."""

try:
    from gluebox.cli import entry
except KeyboardInterrupt:  # Ctrl+C while Python starts (the command restarting itself under its allocator)
    import sys

    print("gluebox: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(entry())
