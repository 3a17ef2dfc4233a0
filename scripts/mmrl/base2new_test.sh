#!/bin/bash
# MMRL base-to-novel, step 2: test the models of step 1 on the new classes of DATASET.
#   bash scripts/mmrl/base2new_test.sh DATASET [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), folders and skipping: scripts/protocols.sh.

# custom config
DATA=${DATA:-PATH/TO/YOUR/DATASETS}  # the datasets folder: edit here, or set DATA in the environment

source "$(dirname "$0")/../protocols.sh"
method_script base2new test MMRL "$@"
