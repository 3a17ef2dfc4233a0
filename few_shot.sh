#!/bin/bash
# Few-shot learning of MMRL or MMRL++ with 1, 2, 4, 8 and 16 shots on every dataset, then the
# table of results.
#   DATA=/path/to/datasets bash few_shot.sh MMRL|MMRLpp [KEY VALUE ...]
#   DATASETS=dtd SHOTS="1 16" bash few_shot.sh MMRL                  # a subset
# Environment (OUTPUT, SEEDS, ...), outputs and skipping: scripts/protocols.sh.
set -euo pipefail
source "$(dirname "$0")/scripts/protocols.sh"
METHOD=${1:?usage: few_shot.sh MMRL|MMRLpp [KEY VALUE ...]}
shift
SCRIPTS=$(method_dir "$METHOD")
require_data
DATASETS=${DATASETS:-dtd eurosat ucf101 oxford_flowers oxford_pets fgvc_aircraft caltech101 food101 stanford_cars sun397 imagenet}
for DATASET in $DATASETS; do
    bash "$SCRIPTS/few_shot.sh" "$DATASET" "$@"
done
# shellcheck disable=SC2086
fs_table "$METHOD" $DATASETS
