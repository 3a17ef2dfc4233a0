#!/bin/bash
# Multi-source domain generalisation, leave one domain out (MetaPrompt's protocol, its scripts/Meta/dg.sh): on
# PACS, VLCS, OfficeHome and DomainNet, each domain held out in turn (DATASET.ID), 1 and 5 shots per class and
# source domain, seeds 1 2 3; each run trains on the other domains and tests on the whole held-out one. Then
# the report and its table (per held-out domain and their average).
#   DATA=/path bash multi_source_dg.sh                       Meta_DG, the method that publishes this protocol
#   DATA=/path bash multi_source_dg.sh Meta_DG [KEY VALUE ...]   any methods with a "dg" entry in protocols.yaml
#   DATASETS=pacs SHOTS=1 SEEDS=1 bash multi_source_dg.sh    a subset
# Environment (OUTPUT, SEEDS, DRY_RUN, ...), folders and skipping: scripts/protocols.sh.
source "$(dirname "$0")/scripts/protocols.sh"
if [ $# -eq 0 ] || [[ $1 == *.* ]]; then set -- Meta_DG "$@"; fi
protocol_main dg "$@"
