"""Community Risk Hub: report once, share everywhere, verified, in seconds."""

__version__ = "0.1.0"
