"""The ``agency`` command line: one face of the platform (``cli.main`` is the typer app).

Commands call ``services`` (or lower layers); other faces (gateway, exporter, portal) are started
as their own processes, never imported.
"""

__all__: list[str] = []
