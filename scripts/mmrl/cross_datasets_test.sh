#!/bin/bash
# MMRL cross-dataset and domain generalisation, step 2: test the ImageNet models on DATASET.
#   bash scripts/mmrl/cross_datasets_test.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
method_script cross_datasets test MMRL "$@"
