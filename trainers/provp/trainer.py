"""The ProVP trainer: the official node (``TRAINER.COOP``), keys (``OPTIM.USE_REF``) and model name on
``CLIPTrainer``; the model and its loss are model.py, the official fork's model selection official.py."""

from __future__ import annotations

from torch import Tensor
from yacs.config import CfgNode

from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError, LossTerms
from . import official
from .model import INSERT_MIN, ProVPModel, build_provp, provp_loss


@TRAINER_REGISTRY.register()
class ProVP(CLIPTrainer):
    """ProVP on Dassl's TrainerX, under the official name, node (``TRAINER.COOP``) and model name."""

    NODE = "COOP"  # shared with CoOp, as the official code
    DEFAULTS = {
        "N_CTX": 16,  # prompt tokens per image block
        "PREC": "fp16",  # fp16, fp32 or amp
        # Ours. True: the official forked Dassl's protocol: test (TEST.SPLIT, the test set by default) after
        # every TRAIN.PRINT_FREQ epochs, keep the best as model-best.pth.tar and report it (model selection on
        # the test set, as the published numbers). False: report the last epoch, as every other method here.
        "SELECT_ON_TEST": False,
    }
    EXTRA_KEYS = {
        "OPTIM.USE_REF": False,  # the official key (its YAML files set it): True adds the re-formation loss
        "LOSS.LAMBDA": 1.0,  # weight of the re-formation loss (the official scripts pass 1.0)
    }
    LEARNER_NAME = "Prompt_learner"
    model_factory = staticmethod(build_provp)
    replay_construction = staticmethod(official.replay_construction)
    model: ProVPModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.COOP
        if settings.N_CTX < 1:
            raise ConfigError(f"TRAINER.COOP.N_CTX must be at least 1, got {settings.N_CTX}")
        if settings.N_CTX <= INSERT_MIN:
            print(
                f"Note: with N_CTX {settings.N_CTX} <= {INSERT_MIN} ProVP inserts no prompts; blocks 2.. blend them "
                f"into the first {settings.N_CTX} patch tokens instead (the official code's behaviour)"
            )
        if settings.SELECT_ON_TEST:
            official.check_select_on_test(cfg)

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[LossTerms, Tensor]:
        return provp_loss(self.model, image, label, self.cfg.OPTIM.USE_REF, self.cfg.LOSS.LAMBDA)

    def after_epoch(self) -> None:
        if self.settings.SELECT_ON_TEST:
            official.test_and_keep_best(self)
        super().after_epoch()

    def deploy_final_model(self) -> None:
        if self.settings.SELECT_ON_TEST:
            official.deploy_best(self)
        else:
            super().deploy_final_model()
