# Shared by the top-level base_to_novel.sh, cross_datasets.sh, few_shot.sh and scripts/{mmrl,mmrlpp}/*.sh.
# The run plan, the output folders and the skipping of finished runs live in tools/protocols/ (the grid and
# the report use the same code); these functions only turn the environment into its command line:
#   python -m tools.protocols run PROTOCOL --phase train|test|all --methods ... --datasets ... -- KEY VALUE ...
# Output folders are the official ones, relative to $OUTPUT (docs/protocols.md):
#   base2new/train_base/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>   (also the ImageNet model of cross_datasets)
#   base2new/test_new/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>     (also the cross-dataset targets)
#   few_shot/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
#   dg/<held-out domain>/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>   (multi-source domain generalisation)
# A run that holds a result is skipped; an unfinished one runs again (training resumes from its last
# checkpoint; the old log is kept as log.txt.incomplete-<time>). Each <CFG> folder gets its parse.txt.
#
# Environment:
#   DATA      the datasets folder (README.md#data); else the DATA= line of scripts/{mmrl,mmrlpp}/*.sh
#   OUTPUT    output root (default: output)
#   SEEDS     seeds to run (default: "1 2 3")
#   SHOTS     shots per class of few_shot and dg (default: "1 2 4 8 16"; dg: "1 5")
#   DATASETS  datasets of the top-level scripts (default: all of the protocol's)
#   PYTHON    interpreter (default: python)
#   BACKBONE  another backbone's published files for the same settings, e.g. rn50 (a method's protocols.yaml
#             "backbones" table, docs/backbones.md; unset: the published default, ViT-B/16)
#   DRY_RUN   1: print the train.py command lines instead of running them
# Arguments after a script's own ones are KEY VALUE config options passed on to train.py, e.g.
#   bash scripts/mmrl/base2new_train.sh dtd MODEL.BACKBONE.PATH /path/ViT-B-16.pt DATALOADER.NUM_WORKERS 4

set -euo pipefail  # every script that sources this file stops at the first error

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)  # this file's repository, through links
PYTHON=${PYTHON:-python}
OUTPUT=${OUTPUT:-output}
SEEDS=${SEEDS:-1 2 3}
SHOTS=${SHOTS:-}  # empty: the protocol's own (tools/protocols/layout.py)
PLACEHOLDER=PATH/TO/YOUR/DATASETS
OFFICIAL="mmrlpp mmrl"  # what the top-level scripts run with no method given: scripts/<m>/*.sh, in this order

# py ARGS...: Python with this repository's packages first on its path, so that ours are used even where
# other libraries named datasets or clip are installed.
py() {
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "$@"
}

# require_data [FILE]: DATA must name a folder, else one error line saying where to set it (FILE's DATA= line).
# With PROTOCOL_CHECK set (the top-level scripts checking every script before running any), stop here.
require_data() {
    local where="run DATA=/path/to/datasets bash $(basename "$0") ..."
    if [ -n "${1:-}" ]; then where="edit the DATA= line of $1 (or set DATA in the environment)"; fi
    if [ -z "${DATA:-}" ] || [ "$DATA" = "$PLACEHOLDER" ]; then
        echo "error: DATA is not set: $where; see README.md#data" >&2
        exit 1
    fi
    if [ ! -d "$DATA" ]; then
        echo "error: DATA=$DATA is not a folder: $where; see README.md#data" >&2
        exit 1
    fi
    if [ -n "${PROTOCOL_CHECK:-}" ]; then exit 0; fi
}

# need_dataset ARGS...: the per-method scripts' first argument, a dataset.
need_dataset() {
    if [ $# -eq 0 ] || [[ $1 == *.* ]]; then
        echo "error: no DATASET given: bash $0 DATASET [KEY VALUE ...] (a name of configs/datasets/*.yaml)" >&2
        exit 1
    fi
}

# method_script PROTOCOL PHASE TRAINER [DATASET] [KEY VALUE ...]: a scripts/<method>/*.sh script, after its
# DATA= line: every step but the cross-dataset training takes a dataset.
method_script() {
    local protocol=$1 phase=$2 trainer=$3 dataset=""
    shift 3
    require_data "$0"
    if [ "$protocol/$phase" != cross_datasets/train ]; then
        need_dataset "$@"
        dataset=$1
        shift
    fi
    run_protocol "$protocol" "$phase" "$trainer" "$dataset" "$@"
}

# run_protocol PROTOCOL PHASE "METHODS" "DATASETS" [KEY VALUE ...]: the protocol's cells, in order.
run_protocol() {
    local protocol=$1 phase=$2 methods=$3 datasets=$4
    shift 4
    local args=(run "$protocol" --phase "$phase" --root "$DATA" --output "$OUTPUT" --python "$PYTHON")
    # shellcheck disable=SC2206
    args+=(--methods $methods --seeds $SEEDS)
    # shellcheck disable=SC2206
    if [ -n "$SHOTS" ]; then args+=(--shots $SHOTS); fi
    # shellcheck disable=SC2206
    if [ -n "$datasets" ]; then args+=(--datasets $datasets); fi
    if [ "${DRY_RUN:-0}" = 1 ]; then args+=(--dry-run); fi
    py -m tools.protocols "${args[@]}" -- "$@"
}

# protocol_datasets PROTOCOL: $DATASETS, or every dataset of the protocol.
protocol_datasets() {
    if [ -n "${DATASETS:-}" ]; then echo "$DATASETS"; else py -m tools.protocols datasets "$1"; fi
}

# protocol_main PROTOCOL [METHOD[,METHOD...]] [KEY VALUE ...]: what the top-level scripts run. With no method,
# the official scripts' loops over scripts/mmrlpp/ then scripts/mmrl/ (each script's own DATA= line; all are
# checked before anything runs); else the given methods side by side. Both end with the report's tables.
protocol_main() {
    local protocol=$1 m dataset methods datasets
    shift
    datasets=$(protocol_datasets "$protocol")
    if [ $# -gt 0 ] && [[ $1 != *.* ]]; then
        methods=$(methods_of "$1")
        shift
        require_data
        run_protocol "$protocol" all "$methods" "$datasets" "$@"
        report "$protocol"
        return
    fi
    case $protocol in
        base2new) check_scripts base2new_train base2new_test ;;
        cross_datasets) check_scripts cross_datasets_train cross_datasets_test ;;
        few_shot) check_scripts few_shot ;;
    esac
    for m in $OFFICIAL; do
        if [ "$protocol" = cross_datasets ]; then bash "$REPO/scripts/$m/cross_datasets_train.sh" "$@"; fi
        for dataset in $datasets; do
            case $protocol in
                base2new)
                    bash "$REPO/scripts/$m/base2new_train.sh" "$dataset" "$@"
                    bash "$REPO/scripts/$m/base2new_test.sh" "$dataset" "$@" ;;
                cross_datasets) bash "$REPO/scripts/$m/cross_datasets_test.sh" "$dataset" "$@" ;;
                few_shot) bash "$REPO/scripts/$m/few_shot.sh" "$dataset" "$@" ;;
            esac
        done
    done
    report "$protocol"
}

# methods_of ARG: the methods of "CoOp,MMRL" (or "CoOp MMRL"), each checked to have published protocols.
methods_of() {
    local m
    for m in ${1//,/ }; do
        if [ ! -f "$REPO/configs/trainers/$m/protocols.yaml" ]; then
            echo "error: '$m' has no configs/trainers/$m/protocols.yaml; methods:" \
                "$(cd "$REPO/configs/trainers" && ls -d -- */protocols.yaml | sed 's|/protocols.yaml||' | tr '\n' ' ')" >&2
            exit 1
        fi
        echo "$m"
    done
}

# check_scripts NAME...: every scripts/<m>/NAME.sh of the official methods finds its DATA, before any runs.
check_scripts() {
    local m name
    for m in $OFFICIAL; do
        for name in "$@"; do
            PROTOCOL_CHECK=1 bash "$REPO/scripts/$m/$name.sh"
        done
    done
}

# report PROTOCOL: the report of the whole output tree (report.md / .csv / .tex, pictures), printing the
# tables of PROTOCOL.
report() {
    if [ "${DRY_RUN:-0}" != 1 ]; then py -m tools.report "$OUTPUT" --show "$1"; fi
}
