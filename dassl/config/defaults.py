"""Every config key of upstream Dassl with its default value, plus ``MODEL.BACKBONE.PATH``.

A YAML file written for upstream must merge without "Non-existent config key", and equal
defaults give equal numbers, so values here are upstream's, not choices of ours.
"""
from yacs.config import CfgNode as CN

from dassl.compat import add_upstream_trainer_nodes

_C = CN()
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""  # directory of an earlier run to resume from
_C.SEED = -1  # negative: no fixed seed
_C.USE_CUDA = True
_C.VERBOSE = True

# ---------------------------------------------------------------- input
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()  # names from dassl.data.transforms.AVAI_CHOICES
_C.INPUT.NO_TRANSFORM = False  # True: the loaders return PIL images untouched
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # ImageNet statistics
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2  # random grayscale probability
_C.INPUT.GB_P = 0.5  # gaussian blur probability
_C.INPUT.GB_K = 21  # gaussian blur kernel size (odd)

# ---------------------------------------------------------------- dataset
_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.ID = -1  # ours (MetaPrompt's key, 0 there): held-out domain index of a DG dataset; -1: TARGET_DOMAINS
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1  # images per class; negative: all
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False
_C.DATASET.FOLDER = CN({"PATH": "", "SPLIT_FILE": "split.json", "CLASSNAMES": "", "TEMPLATE": ""})  # ours: ImageFolder

# ---------------------------------------------------------------- data loaders
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1  # augmented views per training image
_C.DATALOADER.RETURN_IMG0 = False  # also return the un-augmented image as "img0"
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0  # RandomDomainSampler; <= 0: all domains
_C.DATALOADER.TRAIN_X.N_INS = 16  # RandomClassSampler: instances per class
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True  # reuse the TRAIN_X loader settings
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

# ---------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.BACKBONE.PRETRAINED = True
_C.MODEL.BACKBONE.PATH = ""  # ours: a local CLIP weights file used instead of the download
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

# ---------------------------------------------------------------- optimisation
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9  # also used by adamw and radam
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False  # NEW_LAYERS at LR, all other children at LR * BASE_LR_MULT
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)  # single_step: <= 0 means MAX_EPOCH
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # > 0 enables warmup
_C.OPTIM.WARMUP_TYPE = "linear"  # or "constant"
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True  # False: the successor starts at last_epoch = WARMUP_EPOCH

# ---------------------------------------------------------------- training
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # epochs; <= 0: only the last epoch is saved
_C.TRAIN.PRINT_FREQ = 10  # batches
_C.TRAIN.COUNT_ITER = "train_x"  # train_x, train_u or smaller_one

# ---------------------------------------------------------------- testing
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False  # save the confusion matrix to OUTPUT_DIR/cmat.pt
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"  # test or val
_C.TEST.FINAL_MODEL = "last_step"  # or best_val (validates every epoch)

# ---------------------------------------------------------------- trainers
_C.TRAINER = CN()
_C.TRAINER.NAME = ""
add_upstream_trainer_nodes(_C.TRAINER)  # upstream's DA / DG / SSL trainers: dassl/compat.py
