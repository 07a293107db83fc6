"""The generated files: where their templates live, and their digests for build keys.

Imports no Jinja2, so the step graph can key a step on a template's text
without loading the renderer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")


def template_digest(name: str) -> str:
    """The sha256 of a template's source, for build keys."""
    return hashlib.sha256((TEMPLATES / name).read_bytes()).hexdigest()
