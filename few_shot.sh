#!/bin/bash
# Few-shot learning of one or more methods with 1, 2, 4, 8 and 16 shots on every dataset, then their
# table side by side.
#   DATA=/path/to/datasets bash few_shot.sh METHOD[,METHOD...] [KEY VALUE ...]
#   DATASETS=dtd SHOTS="1 16" bash few_shot.sh MMRL                  # a subset
# METHOD is a trainer name with configs/trainers/METHOD/protocols.yaml (its published settings).
# Environment (OUTPUT, SEEDS, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/scripts/protocols.sh"
METHODS=$(methods_of "${1:?usage: few_shot.sh METHOD[,METHOD...] [KEY VALUE ...]}")
shift
require_data
DATASETS=${DATASETS:-dtd eurosat ucf101 oxford_flowers oxford_pets fgvc_aircraft caltech101 food101 stanford_cars sun397 imagenet}
for METHOD in $METHODS; do
    for DATASET in $DATASETS; do
        few_shot "$METHOD" "$DATASET" "$@"
    done
done
# shellcheck disable=SC2086
table few_shot "$METHODS" $DATASETS
