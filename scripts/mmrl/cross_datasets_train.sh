#!/bin/bash
# MMRL cross-dataset, step 1: train on ImageNet (16 shots, all classes); REG_WEIGHT 0.2 as the official script.
#   DATA=/path/to/datasets bash scripts/mmrl/cross_datasets_train.sh [KEY VALUE ...]
# Environment (SEEDS, OUTPUT, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/../protocols.sh"
require_data
cross_datasets_train MMRL "$@"
