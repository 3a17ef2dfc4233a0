# The evaluation protocols, for any method with a configs/trainers/<TRAINER>/protocols.yaml (its
# published config files and options per protocol, read through scripts/protocol.py). Sourced by
# the top-level base_to_novel.sh, cross_datasets.sh, few_shot.sh and scripts/{mmrl,mmrlpp}/*.sh.
# Output folders are the official ones, relative to $OUTPUT:
#   base2new/train_base/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>   (also the ImageNet model of CD)
#   base2new/test_new/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>     (also the cross-dataset tests)
#   few_shot/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
#
# Environment:
#   DATA     folder holding the datasets (required; README.md#data)
#   OUTPUT   output root (default: output)
#   SEEDS    seeds to run (default: "1 2 3")
#   SHOTS    few-shot settings (default: "1 2 4 8 16")
#   PYTHON   interpreter (default: python)
#   BACKBONE another backbone's published files for the same settings, e.g. rn50 (a method's protocols.yaml
#            "backbones" table; unset: the published default, ViT-B/16)
# Arguments after a script's own ones are KEY VALUE config options passed on to train.py, e.g.
#   bash scripts/mmrl/base2new_train.sh dtd MODEL.BACKBONE.PATH /path/ViT-B-16.pt DATALOADER.NUM_WORKERS 4
# A run whose log.txt already holds a result is skipped; an unfinished one is run again
# (training resumes from its last checkpoint; the old log is kept as log.txt.incomplete-<time>);
# one whose folder a live run holds (tools/run_lock.py) is running: skipped, never touched.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
OUTPUT=${OUTPUT:-output}
SEEDS=${SEEDS:-1 2 3}
SHOTS=${SHOTS:-1 2 4 8 16}

require_data() {
    if [ -z "${DATA:-}" ]; then
        echo "error: set DATA=/path/to/datasets, see README.md#data" >&2
        exit 1
    fi
}

# finished DIR: true when DIR/log.txt holds an evaluation result.
finished() {
    grep -qs "^=> result" "$1/log.txt"
}

# run TRAINER DATASET CFG SEED DIR [train.py arguments...]: one run into DIR, unless it is finished.
run() {
    local trainer=$1 dataset=$2 cfg=$3 seed=$4 dir=$5
    shift 5
    if finished "$dir"; then
        echo "Skip $dir (already holds a result)"
        return 0
    fi
    local holder rc=0
    # Moves an unfinished log aside under the folder's lock; exit 75: a live run holds the folder.
    holder=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tools.run_lock prepare "$dir") || rc=$?
    if [ "$rc" = 75 ]; then
        echo "Skip $dir (running: $holder)"
        return 0
    elif [ "$rc" != 0 ]; then
        return "$rc"
    fi
    "$PYTHON" "$REPO/train.py" --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "$REPO/configs/datasets/$dataset.yaml" \
        --config-file "$REPO/configs/trainers/$trainer/$cfg.yaml" \
        --output-dir "$dir" "$@" || rc=$?
    if [ "$rc" = 75 ]; then  # another run took the folder meanwhile (train.py printed which)
        echo "Skip $dir (running elsewhere)"
        return 0
    fi
    return "$rc"
}

# summarize DIR: mean +- std over DIR/seed*/log.txt, printed and written to DIR/parse.txt.
summarize() {
    "$PYTHON" "$REPO/parse_test_res.py" "$1"
}

# protocol_settings TRAINER PROTOCOL DATASET [SHOTS]: sets CFG (the config file), FOLDER (the run folder's
# config level: CFG, or CFG_cross_datasets where a cross-dataset run would share a base-to-novel run's
# folder), EVAL_ONLY (0|1) and PROTO_OPTS (KEY VALUE options) from the method's protocols.yaml.
protocol_settings() {
    local line rest
    line=$("$PYTHON" "$REPO/scripts/protocol.py" settings "$@") || exit 1
    read -r CFG FOLDER EVAL_ONLY rest <<< "$line"
    read -r -a PROTO_OPTS <<< "$rest"
}

# A method with nothing to train (zero-shot) is evaluated directly where the others train.
train_flags() {
    if [ "$EVAL_ONLY" = 1 ]; then echo --eval-only; fi
}

# test_flags MODEL_DIR: evaluate the trained model in MODEL_DIR (or the untrained method).
test_flags() {
    if [ "$EVAL_ONLY" = 1 ]; then echo --eval-only; else echo --model-dir "$1" --eval-only; fi
}

# base2new_train TRAINER DATASET [KEY VALUE ...]: train on the base classes (16 shots).
base2new_train() {
    local trainer=$1 dataset=$2 seed
    shift 2
    protocol_settings "$trainer" base2new "$dataset"
    local dir=$OUTPUT/base2new/train_base/$dataset/shots_16/$trainer/$CFG
    for seed in $SEEDS; do
        # shellcheck disable=SC2046
        run "$trainer" "$dataset" "$CFG" "$seed" "$dir/seed$seed" $(train_flags) \
            DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N ${PROTO_OPTS[@]+"${PROTO_OPTS[@]}"} "$@"
    done
    summarize "$dir"
}

# base2new_test TRAINER DATASET [KEY VALUE ...]: test the base-class models on the new classes.
base2new_test() {
    local trainer=$1 dataset=$2 seed
    shift 2
    protocol_settings "$trainer" base2new "$dataset"
    local common=$dataset/shots_16/$trainer/$CFG
    for seed in $SEEDS; do
        # shellcheck disable=SC2046
        run "$trainer" "$dataset" "$CFG" "$seed" "$OUTPUT/base2new/test_new/$common/seed$seed" \
            $(test_flags "$OUTPUT/base2new/train_base/$common/seed$seed") \
            DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES new TASK B2N ${PROTO_OPTS[@]+"${PROTO_OPTS[@]}"} "$@"
    done
    summarize "$OUTPUT/base2new/test_new/$common"
}

# cross_datasets_train TRAINER [KEY VALUE ...]: train on all ImageNet classes (16 shots).
cross_datasets_train() {
    local trainer=$1 seed
    shift
    protocol_settings "$trainer" cross_datasets imagenet
    local dir=$OUTPUT/base2new/train_base/imagenet/shots_16/$trainer/$FOLDER
    for seed in $SEEDS; do
        # shellcheck disable=SC2046
        run "$trainer" imagenet "$CFG" "$seed" "$dir/seed$seed" $(train_flags) \
            DATASET.NUM_SHOTS 16 TASK CD ${PROTO_OPTS[@]+"${PROTO_OPTS[@]}"} "$@"
    done
    summarize "$dir"
}

# cross_datasets_test TRAINER DATASET [KEY VALUE ...]: test the ImageNet models on DATASET.
cross_datasets_test() {
    local trainer=$1 dataset=$2 seed
    shift 2
    protocol_settings "$trainer" cross_datasets imagenet
    local model=$OUTPUT/base2new/train_base/imagenet/shots_16/$trainer/$FOLDER
    protocol_settings "$trainer" cross_datasets "$dataset"
    local dir=$OUTPUT/base2new/test_new/$dataset/shots_16/$trainer/$FOLDER
    for seed in $SEEDS; do
        # shellcheck disable=SC2046
        run "$trainer" "$dataset" "$CFG" "$seed" "$dir/seed$seed" $(test_flags "$model/seed$seed") \
            DATASET.NUM_SHOTS 16 TASK CD ${PROTO_OPTS[@]+"${PROTO_OPTS[@]}"} "$@"
    done
    summarize "$dir"
}

# few_shot TRAINER DATASET [KEY VALUE ...]: train and test on all classes, for each of $SHOTS.
few_shot() {
    local trainer=$1 dataset=$2 shots seed
    shift 2
    for shots in $SHOTS; do
        protocol_settings "$trainer" few_shot "$dataset" "$shots"
        local dir=$OUTPUT/few_shot/$dataset/shots_$shots/$trainer/$CFG
        for seed in $SEEDS; do
            # shellcheck disable=SC2046
            run "$trainer" "$dataset" "$CFG" "$seed" "$dir/seed$seed" $(train_flags) \
                DATASET.NUM_SHOTS "$shots" TASK FS ${PROTO_OPTS[@]+"${PROTO_OPTS[@]}"} "$@"
        done
        summarize "$dir"
    done
}

# methods_of ARG: the methods named by the top-level scripts' first argument ("CoOp,MMRL" or "CoOp MMRL"),
# each checked to have published protocols before anything runs.
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

# table PROTOCOL "METHODS" DATASET...: the methods side by side (scripts/protocol.py table), then the
# report of the whole output tree (report.md / .csv / .tex, few-shot curves) by tools.report.
table() {
    local protocol=$1 methods=$2
    shift 2
    # shellcheck disable=SC2086
    "$PYTHON" "$REPO/scripts/protocol.py" table "$protocol" --methods $methods --datasets "$@" \
        --output "$OUTPUT" --shots $SHOTS --seeds "$SEEDS"
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tools.report "$OUTPUT"
}
