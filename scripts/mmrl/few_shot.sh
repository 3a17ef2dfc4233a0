#!/bin/bash
# MMRL few-shot: train and test on all classes of DATASET with 1, 2, 4, 8, 16 shots ($SHOTS).
#   bash scripts/mmrl/few_shot.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
method_script few_shot train MMRL "$@"
