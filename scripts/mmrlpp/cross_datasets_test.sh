#!/bin/bash
# MMRL++ cross-dataset, step 2: test the ImageNet models on DATASET.
#   DATA=/path/to/datasets bash scripts/mmrlpp/cross_datasets_test.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/../protocols.sh"
require_data
DATASET=${1:?usage: cross_datasets_test.sh DATASET [KEY VALUE ...]}
shift
cross_datasets_test MMRLpp "$DATASET" "$@"
