#!/bin/bash
# Few-shot learning with 1, 2, 4, 8 and 16 shots on every dataset, then the report and its tables.
#   bash few_shot.sh                               MMRL++ then MMRL, as the official script: scripts/mmrlpp/
#                                                  and scripts/mmrl/ few_shot.sh per dataset
#   DATA=/path bash few_shot.sh CoOp,MMRL [KEY VALUE ...]        any methods with a protocols.yaml
#   DATASETS=dtd SHOTS="1 16" bash few_shot.sh MMRL              a subset
# DATA: the environment, else the DATA= line of each scripts/{mmrlpp,mmrl}/*.sh. Environment (OUTPUT,
# SEEDS, DRY_RUN, ...), folders and skipping: scripts/protocols.sh.
source "$(dirname "$0")/scripts/protocols.sh"
protocol_main few_shot "$@"
