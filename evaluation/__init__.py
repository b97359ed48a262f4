"""Scoring: confusion matrix, per-class IoU and mIoU, full-image inference."""
from .inference import evaluate, predict_logits
from .metrics import ConfusionMatrix, mean_iou, per_class_iou

__all__ = ["ConfusionMatrix", "evaluate", "mean_iou", "per_class_iou", "predict_logits"]
