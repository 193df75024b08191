"""Spatial helpers shared by connectors and fusion: community assignment, tiles, CRS."""
