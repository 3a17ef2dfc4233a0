"""``DemoShapes``: the demo's target dataset, registered like the 15 real ones and in their layout.

``<root>/demo_shapes/images/<colour>_<shape>/<n>.png`` with ``split_zhou_DemoShapes.json``, so it
goes through the same split reading, few-shot sampling and base/new subsampling as DTD does. Its
prompts use the default template, "a photo of a {}.".
"""

from dassl.data.datasets import DATASET_REGISTRY
from datasets.utils import SplitDataset

DATASET_DIR = "demo_shapes"
SPLIT_FILE = "split_zhou_DemoShapes.json"


@DATASET_REGISTRY.register()
class DemoShapes(SplitDataset):
    dataset_dir = DATASET_DIR
    image_folder = "images"
    split_file = SPLIT_FILE
