"""Robustness analysis: where a model's output starts to change under each op, realism-controlled synthesis, an HTML
report and evaluation (:class:`Analyzer`)."""

from fastaug.robust.analyzer import Analyzer
from fastaug.robust.boundaries import Boundary, Curve
from fastaug.robust.errors import box_iou_error, keypoint_error, label_error, mask_iou_error, probability_error
from fastaug.robust.ops import NAMES as OP_NAMES
from fastaug.robust.ops import OPS, RobustAugment, RobustOp
from fastaug.robust.predict import per_file, per_image

__all__ = [
    "Analyzer", "Boundary", "Curve", "OPS", "OP_NAMES", "RobustAugment", "RobustOp", "box_iou_error", "keypoint_error",
    "label_error", "mask_iou_error", "per_file", "per_image", "probability_error",
]  # fmt: skip
