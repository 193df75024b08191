"""``hub demo``: replay the real SF incident reports through per-community connectors."""
