"""The configuration layer: instellar.yml -> a located, validated model (no jinja2, networkx or doit)."""
