"""Command-line tools over whole output trees: the report (tables, plots) and grids of runs."""
