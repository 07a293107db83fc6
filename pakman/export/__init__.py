"""The step graph, exported: JSON, dot, Mermaid, a Makefile and build.ninja."""
