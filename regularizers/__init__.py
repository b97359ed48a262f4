"""Consistency regularizers (perturbations), mean teacher, masks and losses.

Every regularizer is called as ``loss, stats = reg(student, teacher, batch, partner)`` (see
``box_mixing.py``) and declares what it needs (``needs_partner``: a second unlabelled batch;
``needs_views``: paired teacher/student views with ``theta``) and its paper defaults
(``default_weight``, ``defaults``). ``masks.py``, ``losses.py`` and ``mean_teacher.py``
import only numpy/torch and can be copied alone.
"""
from .aug import AugConsistency
from .box_mixing import CutMix, Cutout
from .classmix import ClassMix
from .cow_masks import CowMaskGenerator, CowMix, CowOut
from .ict import ICT
from .losses import CONS_LOSSES, ConsistencyLoss
from .masks import BoxMaskGenerator
from .mean_teacher import MeanTeacher, ema_update
from .registry import REGULARIZERS, build_regularizer, get_regularizer_class, register_regularizer, regularizer_defaults
from .vat import VAT

register_regularizer("cutout", Cutout)
register_regularizer("cutmix", CutMix)
register_regularizer("aug", AugConsistency)
register_regularizer("ict", ICT)
register_regularizer("vat", VAT)
register_regularizer("cowout", CowOut)
register_regularizer("cowmix", CowMix)
register_regularizer("classmix", ClassMix)

__all__ = ["CONS_LOSSES", "REGULARIZERS", "VAT", "AugConsistency", "BoxMaskGenerator", "ClassMix", "ConsistencyLoss",
           "CowMaskGenerator", "CowMix", "CowOut", "CutMix", "Cutout", "ICT", "MeanTeacher", "build_regularizer",
           "ema_update", "get_regularizer_class", "register_regularizer", "regularizer_defaults"]
