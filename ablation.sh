#!/bin/bash
# A method's ablation: one hyperparameter over the values its configs/trainers/<TRAINER>/protocols.yaml declares
# (ablations:), each value a base-to-novel run of its own, then the report and the ablation's table.
#   DATA=/path bash ablation.sh MMRL lambda [KEY VALUE ...]       MMRL's Table 8 grid, beside the paper's HMs
#   DATA=/path bash ablation.sh MMRL,MMRLpp regularizer           several methods declaring the same name
#   VALUES="0.5 3.0" DATASETS=dtd SEEDS=1 bash ablation.sh MMRL lambda   a subset
#   bash ablation.sh MMRL                                          the declared ablations, values and folders
# Folders: $OUTPUT/ablation/<name>/<value>/base2new/... (tools/protocols/ablation.py). Environment as
# base_to_novel.sh (scripts/protocols.sh), and VALUES; DATASETS and SEEDS default to the ablation's own.
# The grid runs the same cells on several GPUs or SLURM: python -m tools.grid --ablation lambda --methods MMRL ...
ABLATION_SEEDS=${SEEDS:-}  # before protocols.sh sets its default: unset means the ablation's declared seeds
source "$(dirname "$0")/scripts/protocols.sh"

if [ $# -eq 0 ] || [[ $1 == *.* ]]; then
    echo "error: no method given: bash $0 METHOD[,METHOD] NAME [KEY VALUE ...] (NAME: an ablation of its" \
        "configs/trainers/<METHOD>/protocols.yaml; bash $0 METHOD lists them)" >&2
    exit 1
fi
methods=$(methods_of "$1")
shift
if [ $# -eq 0 ] || [[ $1 == *.* ]]; then
    for m in $methods; do py -m tools.protocols ablations "$m" --output "$OUTPUT"; done
    exit 0
fi
name=$1
shift
for m in $methods; do py -m tools.protocols ablations "$m" "$name" --output "$OUTPUT" >/dev/null; done
require_data
args=(run base2new --ablation "$name" --phase all --root "$DATA" --output "$OUTPUT" --python "$PYTHON")
# shellcheck disable=SC2206
args+=(--methods $methods)
# shellcheck disable=SC2206
if [ -n "$ABLATION_SEEDS" ]; then args+=(--seeds $ABLATION_SEEDS); fi
# shellcheck disable=SC2206
if [ -n "${DATASETS:-}" ]; then args+=(--datasets $DATASETS); fi
# shellcheck disable=SC2206
if [ -n "${VALUES:-}" ]; then args+=(--values $VALUES); fi
if [ "${DRY_RUN:-0}" = 1 ]; then args+=(--dry-run); fi
py -m tools.protocols "${args[@]}" -- "$@"
report ablation
