#!/bin/bash
# Cross-dataset transfer and domain generalisation of MMRL or MMRL++: train on ImageNet, test on
# every other dataset and ImageNet variant, then the table of results.
#   DATA=/path/to/datasets bash cross_datasets.sh MMRL|MMRLpp [KEY VALUE ...]
#   DATASETS="dtd imagenetv2" bash cross_datasets.sh MMRL            # other targets
# Environment (OUTPUT, SEEDS, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/scripts/protocols.sh"
METHOD=${1:?usage: cross_datasets.sh MMRL|MMRLpp [KEY VALUE ...]}
shift
SCRIPTS=$(method_dir "$METHOD")
require_data
DATASETS=${DATASETS:-dtd eurosat ucf101 oxford_flowers oxford_pets fgvc_aircraft caltech101 food101 stanford_cars sun397 imagenet_a imagenet_r imagenet_sketch imagenetv2}
bash "$SCRIPTS/cross_datasets_train.sh" "$@"
for DATASET in $DATASETS; do
    bash "$SCRIPTS/cross_datasets_test.sh" "$DATASET" "$@"
done
# shellcheck disable=SC2086
cd_table "$METHOD" $DATASETS
