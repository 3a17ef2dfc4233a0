#!/bin/bash
# Base-to-novel generalisation of MMRL or MMRL++ on every dataset, then the table of results.
#   DATA=/path/to/datasets bash base_to_novel.sh MMRL|MMRLpp [KEY VALUE ...]
#   DATASETS="dtd eurosat" SEEDS=1 bash base_to_novel.sh MMRLpp      # a subset
# Environment (OUTPUT, SEEDS, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/scripts/protocols.sh"
METHOD=${1:?usage: base_to_novel.sh MMRL|MMRLpp [KEY VALUE ...]}
shift
SCRIPTS=$(method_dir "$METHOD")
require_data
DATASETS=${DATASETS:-eurosat dtd ucf101 oxford_flowers oxford_pets fgvc_aircraft caltech101 food101 stanford_cars sun397 imagenet}
for DATASET in $DATASETS; do
    bash "$SCRIPTS/base2new_train.sh" "$DATASET" "$@"
    bash "$SCRIPTS/base2new_test.sh" "$DATASET" "$@"
done
# shellcheck disable=SC2086
b2n_table "$METHOD" $DATASETS
