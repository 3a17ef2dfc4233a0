#!/bin/bash
# MMRL few-shot: train and test on all classes of DATASET with 1, 2, 4, 8, 16 shots ($SHOTS).
#   DATA=/path/to/datasets bash scripts/mmrl/few_shot.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/../protocols.sh"
require_data
DATASET=${1:?usage: few_shot.sh DATASET [KEY VALUE ...]}
shift
few_shot MMRL "$DATASET" "$@"
