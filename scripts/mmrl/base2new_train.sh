#!/bin/bash
# MMRL base-to-novel, step 1: train on the base classes of DATASET (16 shots), one run per seed.
#   DATA=/path/to/datasets bash scripts/mmrl/base2new_train.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/../protocols.sh"
require_data
DATASET=${1:?usage: base2new_train.sh DATASET [KEY VALUE ...]}
shift
base2new_train MMRL "$DATASET" "$@"
