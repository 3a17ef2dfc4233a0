# The evaluation protocols of MMRL / MMRL++, sourced by scripts/{mmrl,mmrlpp}/*.sh and the
# top-level base_to_novel.sh, cross_datasets.sh and few_shot.sh. Output folders are the
# official ones, relative to $OUTPUT:
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
# Arguments after a script's own ones are KEY VALUE config options passed on to train.py, e.g.
#   bash scripts/mmrl/base2new_train.sh dtd MODEL.BACKBONE.PATH /path/ViT-B-16.pt DATALOADER.NUM_WORKERS 4
# A run whose log.txt already holds a result is skipped; an unfinished one is run again
# (training resumes from its last checkpoint; the old log is kept as log.txt.incomplete-<time>).

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
    if [ -f "$dir/log.txt" ]; then
        mv "$dir/log.txt" "$dir/log.txt.incomplete-$(date +%Y%m%d-%H%M%S)"
    fi
    "$PYTHON" "$REPO/train.py" --root "$DATA" --seed "$seed" --trainer "$trainer" \
        --dataset-config-file "$REPO/configs/datasets/$dataset.yaml" \
        --config-file "$REPO/configs/trainers/$trainer/$cfg.yaml" \
        --output-dir "$dir" "$@"
}

# summarize DIR: mean +- std over DIR/seed*/log.txt, printed and written to DIR/parse.txt.
summarize() {
    "$PYTHON" "$REPO/parse_test_res.py" "$1"
}

b2n_config() {
    if [ "$1" = imagenet ]; then echo vit_b16_imagenet; else echo vit_b16; fi
}

# base2new_train TRAINER DATASET [KEY VALUE ...]: train on the base classes (16 shots).
base2new_train() {
    local trainer=$1 dataset=$2 cfg seed
    shift 2
    cfg=$(b2n_config "$dataset")
    local dir=$OUTPUT/base2new/train_base/$dataset/shots_16/$trainer/$cfg
    for seed in $SEEDS; do
        run "$trainer" "$dataset" "$cfg" "$seed" "$dir/seed$seed" \
            DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N "$@"
    done
    summarize "$dir"
}

# base2new_test TRAINER DATASET [KEY VALUE ...]: test the base-class models on the new classes.
base2new_test() {
    local trainer=$1 dataset=$2 cfg seed
    shift 2
    cfg=$(b2n_config "$dataset")
    local common=$dataset/shots_16/$trainer/$cfg
    for seed in $SEEDS; do
        run "$trainer" "$dataset" "$cfg" "$seed" "$OUTPUT/base2new/test_new/$common/seed$seed" \
            --model-dir "$OUTPUT/base2new/train_base/$common/seed$seed" --eval-only \
            DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES new TASK B2N "$@"
    done
    summarize "$OUTPUT/base2new/test_new/$common"
}

# cross_datasets_train TRAINER [KEY VALUE ...]: train on all ImageNet classes (16 shots).
cross_datasets_train() {
    local trainer=$1 cfg=vit_b16_cross_datasets seed
    shift
    local dir=$OUTPUT/base2new/train_base/imagenet/shots_16/$trainer/$cfg
    for seed in $SEEDS; do
        run "$trainer" imagenet "$cfg" "$seed" "$dir/seed$seed" DATASET.NUM_SHOTS 16 TASK CD "$@"
    done
    summarize "$dir"
}

# cross_datasets_test TRAINER DATASET [KEY VALUE ...]: test the ImageNet models on DATASET.
cross_datasets_test() {
    local trainer=$1 dataset=$2 cfg=vit_b16_cross_datasets seed
    shift 2
    local dir=$OUTPUT/base2new/test_new/$dataset/shots_16/$trainer/$cfg
    for seed in $SEEDS; do
        run "$trainer" "$dataset" "$cfg" "$seed" "$dir/seed$seed" \
            --model-dir "$OUTPUT/base2new/train_base/imagenet/shots_16/$trainer/$cfg/seed$seed" --eval-only \
            DATASET.NUM_SHOTS 16 TASK CD "$@"
    done
    summarize "$dir"
}

# few_shot TRAINER DATASET [KEY VALUE ...]: train and test on all classes, for each of $SHOTS.
few_shot() {
    local trainer=$1 dataset=$2 cfg=vit_b16_few_shot shots seed
    shift 2
    if [ "$dataset" = imagenet ]; then cfg=vit_b16_imagenet; fi
    for shots in $SHOTS; do
        local dir=$OUTPUT/few_shot/$dataset/shots_$shots/$trainer/$cfg
        for seed in $SEEDS; do
            run "$trainer" "$dataset" "$cfg" "$seed" "$dir/seed$seed" DATASET.NUM_SHOTS "$shots" TASK FS "$@"
        done
        summarize "$dir"
    done
}

# ---- Result tables of the top-level scripts (read the parse.txt files written above).

# mean_of DIR: the mean accuracy in DIR/parse.txt, or "-" when there is none.
mean_of() {
    local value
    value=$(sed -n 's/^\* accuracy: \([0-9.]*\)%.*/\1/p' "$1/parse.txt" 2>/dev/null | tail -n 1)
    echo "${value:--}"
}

# method_dir TRAINER: the scripts folder of a trainer.
method_dir() {
    case $1 in
        MMRL) echo "$REPO/scripts/mmrl" ;;
        MMRLpp) echo "$REPO/scripts/mmrlpp" ;;
        *)
            echo "error: the method must be MMRL or MMRLpp, got '$1'" >&2
            exit 1
            ;;
    esac
}

# b2n_table TRAINER DATASET...: base and novel accuracy and their harmonic mean, then the
# averages over datasets (HM of the averages, as the papers report it).
b2n_table() {
    local trainer=$1 dataset cfg
    shift
    echo "Base-to-novel, $trainer: accuracy (%), mean over seeds $SEEDS"
    for dataset in "$@"; do
        cfg=$(b2n_config "$dataset")
        echo "$dataset" \
            "$(mean_of "$OUTPUT/base2new/train_base/$dataset/shots_16/$trainer/$cfg")" \
            "$(mean_of "$OUTPUT/base2new/test_new/$dataset/shots_16/$trainer/$cfg")"
    done | awk '
        BEGIN { printf "%-16s %8s %8s %8s\n", "dataset", "base", "novel", "HM" }
        {
            hm = "-"
            if ($2 != "-" && $3 != "-") {
                if ($2 + $3 > 0) hm = sprintf("%.2f", 2 * $2 * $3 / ($2 + $3))
                base += $2; novel += $3; n++
            }
            printf "%-16s %8s %8s %8s\n", $1, $2, $3, hm
        }
        END {
            if (n) {
                b = base / n; v = novel / n
                printf "%-16s %8.2f %8.2f %8.2f\n", "average", b, v, (b + v > 0 ? 2 * b * v / (b + v) : 0)
            }
        }'
}

# cd_table TRAINER DATASET...: the ImageNet source, every target, and the averages over the
# other datasets (cross-dataset) and over the ImageNet variants (domain generalisation).
cd_table() {
    local trainer=$1 cfg=vit_b16_cross_datasets dataset
    shift
    echo "Cross-dataset, $trainer: accuracy (%), mean over seeds $SEEDS"
    {
        echo "imagenet(source)" "$(mean_of "$OUTPUT/base2new/train_base/imagenet/shots_16/$trainer/$cfg")"
        for dataset in "$@"; do
            echo "$dataset" "$(mean_of "$OUTPUT/base2new/test_new/$dataset/shots_16/$trainer/$cfg")"
        done
    } | awk '
        BEGIN { printf "%-20s %8s\n", "dataset", "accuracy" }
        { printf "%-20s %8s\n", $1, $2 }
        NR > 1 && $2 != "-" { if ($1 ~ /^imagenet/) { dg += $2; nd++ } else { cd += $2; nc++ } }
        END {
            if (nc) printf "%-20s %8.2f\n", "cross-dataset avg", cd / nc
            if (nd) printf "%-20s %8.2f\n", "domain-gen. avg", dg / nd
        }'
}

# fs_table TRAINER DATASET...: accuracy per dataset and number of shots, and the averages.
fs_table() {
    local trainer=$1 dataset cfg shots row
    shift
    echo "Few-shot, $trainer: accuracy (%), mean over seeds $SEEDS"
    for dataset in "$@"; do
        cfg=vit_b16_few_shot
        if [ "$dataset" = imagenet ]; then cfg=vit_b16_imagenet; fi
        row=$dataset
        for shots in $SHOTS; do
            row="$row $(mean_of "$OUTPUT/few_shot/$dataset/shots_$shots/$trainer/$cfg")"
        done
        echo "$row"
    done | awk -v shots="$SHOTS" '
        BEGIN {
            n = split(shots, s, " ")
            printf "%-16s", "dataset"
            for (i = 1; i <= n; i++) printf " %8s", s[i] "-shot"
            print ""
        }
        {
            printf "%-16s", $1
            for (i = 2; i <= NF; i++) {
                printf " %8s", $i
                if ($i != "-") { sum[i] += $i; cnt[i]++ }
            }
            print ""
        }
        END {
            printf "%-16s", "average"
            for (i = 2; i <= n + 1; i++) printf " %8s", (cnt[i] ? sprintf("%.2f", sum[i] / cnt[i]) : "-")
            print ""
        }'
}
