"""The 15 CoOp/MMRL datasets, MetaPrompt's 4 domain-generalisation datasets and ImageFolder (your own data);
importing this package registers them all."""
from . import (  # noqa: F401
    caltech101,
    domainnet,
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
    office_home,
    oxford_flowers,
    oxford_pets,
    pacs,
    stanford_cars,
    sun397,
    ucf101,
    vlcs,
)
