#!/bin/bash
# Cross-dataset transfer and domain generalisation: train on ImageNet, test on every other dataset and every
# ImageNet variant, then the report and its tables.
#   bash cross_datasets.sh                         MMRL++ then MMRL, as the official script: scripts/mmrlpp/
#                                                  and scripts/mmrl/ cross_datasets_{train,test}.sh
#   DATA=/path bash cross_datasets.sh CoOp,MMRL [KEY VALUE ...]  any methods with a protocols.yaml
#   DATASETS="dtd imagenetv2" bash cross_datasets.sh MMRL        other targets
# DATA: the environment, else the DATA= line of each scripts/{mmrlpp,mmrl}/*.sh. Environment (OUTPUT,
# SEEDS, DRY_RUN, ...), folders and skipping: scripts/protocols.sh.
source "$(dirname "$0")/scripts/protocols.sh"
protocol_main cross_datasets "$@"
