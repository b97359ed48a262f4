"""Scoring: confusion matrix, per-class IoU and mIoU, full-image inference."""
from .inference import evaluate, predict_logits
from .metrics import ConfusionMatrix, image_iou, mean_iou, per_class_iou
from .postprocess import fill_holes

__all__ = ["ConfusionMatrix", "evaluate", "fill_holes", "image_iou", "mean_iou", "per_class_iou", "predict_logits"]
