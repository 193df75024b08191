"""The ``hub`` command line (typer): one module per command group."""
