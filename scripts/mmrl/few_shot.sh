#!/bin/bash
# MMRL few-shot: train and test on all classes of DATASET with 1, 2, 4, 8, 16 shots ($SHOTS).
#   bash scripts/mmrl/few_shot.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.
set -euo pipefail

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
require_data "$0"
need_dataset "$@"
DATASET=$1
shift
run_protocol few_shot train MMRL "$DATASET" "$@"
