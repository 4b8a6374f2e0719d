"""``python -m tierwise`` runs the CLI (the launcher starts its children this way)."""

from tierwise.cli import app

app()
