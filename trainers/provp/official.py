"""What exists only to match the official ProVP code (github MCG-NJU/ProVP at 837b8fb) bit for bit.

- Its build draws, after CLIP's construction, a second full CLIP construction (its always-fp32 zero-shot
  CLIP, whose image tower gives the re-formation loss's frozen features), then the prompts
  (``replay_construction``).
- Its forked Dassl (ProVP's ``Dassl/``, ``dassl/engine/trainer.py``) evaluates on ``TEST.SPLIT`` (the test
  set by default) after every ``TRAIN.PRINT_FREQ`` epochs (every epoch in all its configs), saves the best
  as ``model-best.pth.tar`` and, after training, loads that file and tests it: the reported accuracy is the
  best over the epochs on the test set itself (``TRAINER.COOP.SELECT_ON_TEST``: ``test_and_keep_best``,
  ``deploy_best``). Each of these evaluations starts a test loader, which draws one number from the global
  torch generator, so every later shuffle and augmentation of the run depends on this protocol too.
A new method never imports this.
"""

from __future__ import annotations

import os.path as osp
from typing import TYPE_CHECKING

from torch import Tensor
from yacs.config import CfgNode

from clip.model import CLIP
from dassl.engine.checkpoints import BEST, checkpoint_epoch
from dassl.evaluation import ModelSelection

from ..base import ConfigError
from ..replay import replay_clip_construction
from .model import draw_prompts

if TYPE_CHECKING:
    from .trainer import ProVP


def replay_construction(clip_model: CLIP, settings: CfgNode) -> Tensor:
    """Draw what the official build draws: two CLIP constructions, then the prompts; returns the prompts."""
    replay_clip_construction(clip_model)  # the prompted CLIP
    replay_clip_construction(clip_model)  # the zero-shot CLIP
    visual = clip_model.visual
    return draw_prompts(len(visual.transformer.resblocks), settings.N_CTX, visual.conv1.weight.shape[0])


def check_select_on_test(cfg: CfgNode) -> None:
    """The settings the official protocol cannot run with, before anything is built."""
    if cfg.TEST.FINAL_MODEL == "best_val":
        raise ConfigError(
            "TRAINER.COOP.SELECT_ON_TEST True selects the final model on the test split; TEST.FINAL_MODEL best_val "
            "would select on val as well: use one of them"
        )
    if cfg.TRAIN.PRINT_FREQ > cfg.OPTIM.MAX_EPOCH:
        raise ConfigError(
            f"TRAINER.COOP.SELECT_ON_TEST True tests every TRAIN.PRINT_FREQ ({cfg.TRAIN.PRINT_FREQ}) epochs, more than "
            f"OPTIM.MAX_EPOCH ({cfg.OPTIM.MAX_EPOCH}): no epoch would be tested; lower TRAIN.PRINT_FREQ"
        )


def test_and_keep_best(trainer: ProVP) -> None:
    """The fork's end of an epoch, before the usual one: every PRINT_FREQ epochs, test and keep the best."""
    epoch = trainer.epoch + 1
    if epoch % trainer.cfg.TRAIN.PRINT_FREQ:
        return
    trainer.model_selection = ModelSelection("epoch", epoch)
    result = trainer.test()
    if result > trainer.best_result:  # the first of equal results is kept
        trainer.best_result = result
        trainer.save_model(trainer.epoch, trainer.output_dir, val_result=result, model_name=BEST)


def deploy_best(trainer: ProVP) -> None:
    """The fork's end of training: the best tested epoch is the model of the final test."""
    print("Deploy the model with the best test performance (the official ProVP protocol)")
    trainer.load_model(trainer.output_dir)
    path = osp.join(trainer.output_dir, trainer.LEARNER_NAME, BEST)
    trainer.model_selection = ModelSelection("best_test", checkpoint_epoch(path), osp.abspath(trainer.output_dir))
