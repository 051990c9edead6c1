"""The `whisperfast` command (app.py: parse, call the library, print) and its tables (render.py)."""

from .app import app, main

__all__ = ["app", "main"]
