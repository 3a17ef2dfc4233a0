#!/bin/bash
# MMRL cross-dataset and domain generalisation, step 2: test the ImageNet models on DATASET.
#   bash scripts/mmrl/cross_datasets_test.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.
set -euo pipefail

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
require_data "$0"
need_dataset "$@"
DATASET=$1
shift
run_protocol cross_datasets test MMRL "$DATASET" "$@"
