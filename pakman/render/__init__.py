"""Rendering the packaging files: each generated file declared once (files), the Jinja2 engine (engine)."""
