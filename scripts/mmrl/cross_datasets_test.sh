#!/bin/bash
# MMRL cross-dataset, step 2: test the ImageNet models on DATASET (REP_DIM 512 is the ImageNet model's).
#   DATA=/path/to/datasets bash scripts/mmrl/cross_datasets_test.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/../protocols.sh"
require_data
DATASET=${1:?usage: cross_datasets_test.sh DATASET [KEY VALUE ...]}
shift
cross_datasets_test MMRL "$DATASET" "$@"
