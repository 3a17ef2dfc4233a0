#!/bin/bash
# MMRL++ cross-dataset, step 1: train on all ImageNet classes (16 shots), one run per seed.
#   bash scripts/mmrlpp/cross_datasets_train.sh [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
method_script cross_datasets train MMRLpp "$@"
