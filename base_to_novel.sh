#!/bin/bash
# Base-to-novel generalisation on every dataset (train on the base classes, test on the new ones), then the
# report and its table.
#   bash base_to_novel.sh                          MMRL++ then MMRL, as the official script: scripts/mmrlpp/
#                                                  and scripts/mmrl/ base2new_{train,test}.sh per dataset
#   DATA=/path bash base_to_novel.sh CoOp,MMRL [KEY VALUE ...]   any methods with a protocols.yaml
#   DATASETS="dtd eurosat" SEEDS=1 bash base_to_novel.sh MMRLpp  a subset
# DATA: the environment, else the DATA= line of each scripts/{mmrlpp,mmrl}/*.sh. Environment (OUTPUT,
# SEEDS, DRY_RUN, ...), folders and skipping: scripts/protocols.sh.
source "$(dirname "$0")/scripts/protocols.sh"
protocol_main base2new "$@"
