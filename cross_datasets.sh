#!/bin/bash
# Cross-dataset transfer and domain generalisation of one or more methods: train on ImageNet, test on
# every other dataset and ImageNet variant, then their table side by side.
#   DATA=/path/to/datasets bash cross_datasets.sh METHOD[,METHOD...] [KEY VALUE ...]
#   DATASETS="dtd imagenetv2" bash cross_datasets.sh MMRL            # other targets
# METHOD is a trainer name with configs/trainers/METHOD/protocols.yaml (its published settings).
# Environment (OUTPUT, SEEDS, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/scripts/protocols.sh"
METHODS=$(methods_of "${1:?usage: cross_datasets.sh METHOD[,METHOD...] [KEY VALUE ...]}")
shift
require_data
DATASETS=${DATASETS:-dtd eurosat ucf101 oxford_flowers oxford_pets fgvc_aircraft caltech101 food101 stanford_cars sun397 imagenet_a imagenet_r imagenet_sketch imagenetv2}
for METHOD in $METHODS; do
    cross_datasets_train "$METHOD" "$@"
    for DATASET in $DATASETS; do
        cross_datasets_test "$METHOD" "$DATASET" "$@"
    done
done
# shellcheck disable=SC2086
table cross_datasets "$METHODS" $DATASETS
