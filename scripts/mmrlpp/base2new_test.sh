#!/bin/bash
# MMRL++ base-to-novel, step 2: test the base-class models on the new classes of DATASET.
#   DATA=/path/to/datasets bash scripts/mmrlpp/base2new_test.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/../protocols.sh"
require_data
DATASET=${1:?usage: base2new_test.sh DATASET [KEY VALUE ...]}
shift
base2new_test MMRLpp "$DATASET" "$@"
