"""Command-line tools over runs and whole output trees: the protocols (run plan, folders, status), the grid of runs
(local / SLURM) and the report (tables, pictures), with the paper's numbers beside ours."""
