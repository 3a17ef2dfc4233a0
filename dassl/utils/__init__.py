"""Helpers shared by the engine, the datasets and the trainers (upstream's ``dassl.utils`` names)."""
from .logger import Logger, setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry
from .tools import (
    UserError,
    atomic_write,
    check_availability,
    check_isfile,
    collect_env_info,
    get_most_similar_str_to_a_from_b,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    read_pickle,
    set_random_seed,
    tolist_if_not,
    write_json,
    write_pickle,
)
from .torchtools import (
    PickledObject,
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
)

__all__ = [
    "UserError",
    "Logger",
    "setup_logger",
    "AverageMeter",
    "MetricMeter",
    "Registry",
    "atomic_write",
    "check_availability",
    "check_isfile",
    "collect_env_info",
    "get_most_similar_str_to_a_from_b",
    "listdir_nohidden",
    "mkdir_if_missing",
    "read_image",
    "read_json",
    "read_pickle",
    "set_random_seed",
    "tolist_if_not",
    "write_json",
    "write_pickle",
    "PickledObject",
    "count_num_param",
    "load_checkpoint",
    "load_pretrained_weights",
    "resume_from_checkpoint",
    "save_checkpoint",
]
