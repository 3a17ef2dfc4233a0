"""The 15 CoOp/MMRL datasets and ImageFolder (your own data); importing this package registers them all."""
from . import (  # noqa: F401
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    folder,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)
