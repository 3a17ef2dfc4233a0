#!/bin/bash
# Base-to-novel generalisation of one or more methods on every dataset, then their table side by side.
#   DATA=/path/to/datasets bash base_to_novel.sh METHOD[,METHOD...] [KEY VALUE ...]
#   DATA=... bash base_to_novel.sh CoOp,CoCoOp,MMRL                  # methods side by side
#   DATASETS="dtd eurosat" SEEDS=1 bash base_to_novel.sh MMRLpp      # a subset
# METHOD is a trainer name with configs/trainers/METHOD/protocols.yaml (its published settings).
# Environment (OUTPUT, SEEDS, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/scripts/protocols.sh"
METHODS=$(methods_of "${1:?usage: base_to_novel.sh METHOD[,METHOD...] [KEY VALUE ...]}")
shift
require_data
DATASETS=${DATASETS:-eurosat dtd ucf101 oxford_flowers oxford_pets fgvc_aircraft caltech101 food101 stanford_cars sun397 imagenet}
for METHOD in $METHODS; do
    for DATASET in $DATASETS; do
        base2new_train "$METHOD" "$DATASET" "$@"
        base2new_test "$METHOD" "$DATASET" "$@"
    done
done
# shellcheck disable=SC2086
table base2new "$METHODS" $DATASETS
