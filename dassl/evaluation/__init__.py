from .build import EVALUATOR_REGISTRY, build_evaluator  # isort: skip
from .evaluator import Classification, EvaluatorBase
from .metrics_file import METRICS_FILE, ModelSelection, read_metrics, run_metadata

__all__ = [
    "EVALUATOR_REGISTRY",
    "build_evaluator",
    "Classification",
    "EvaluatorBase",
    "METRICS_FILE",
    "ModelSelection",
    "read_metrics",
    "run_metadata",
]
