from .build import DATASET_REGISTRY, build_dataset  # isort:skip
from .base_dataset import Datum, DatasetBase  # isort:skip

__all__ = ["DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase"]
