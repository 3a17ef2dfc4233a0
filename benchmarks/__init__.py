"""Speed, cost and agreement measurements: ``python -m benchmarks.<name>`` from the repository root
(benchmarks/README.md)."""
