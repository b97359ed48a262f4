"""Consistency regularizers (perturbations), mean teacher, masks and losses.

Every regularizer is called as ``loss, stats = reg(student, teacher, batch, partner)`` (see
``box_mixing.py``) and declares what it needs (``needs_partner``: a second unlabelled batch) and its
paper defaults (``default_weight``, ``defaults``). ``masks.py``, ``losses.py`` and ``mean_teacher.py``
import only numpy/torch and can be copied alone.
"""
from .box_mixing import CutMix, Cutout
from .losses import CONS_LOSSES, ConsistencyLoss
from .masks import BoxMaskGenerator
from .mean_teacher import MeanTeacher, ema_update
from .registry import REGULARIZERS, build_regularizer, get_regularizer_class, register_regularizer

register_regularizer("cutout", Cutout)
register_regularizer("cutmix", CutMix)

__all__ = ["CONS_LOSSES", "REGULARIZERS", "BoxMaskGenerator", "ConsistencyLoss", "CutMix", "Cutout",
           "MeanTeacher", "build_regularizer", "ema_update", "get_regularizer_class", "register_regularizer"]
