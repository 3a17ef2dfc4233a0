#!/bin/bash
# MMRL++ base-to-novel, step 1: train on the base classes of DATASET (16 shots), one run per seed.
#   bash scripts/mmrlpp/base2new_train.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
method_script base2new train MMRLpp "$@"
