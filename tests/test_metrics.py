import pytest
import torch

from evaluation import ConfusionMatrix, evaluate, fill_holes, mean_iou, per_class_iou


def test_miou_of_hand_computed_matrix_with_ignore():
    label = torch.tensor([[0, 0, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0]])
    cm = ConfusionMatrix(2)
    cm.update(pred, label)
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]  # the ignored pixel is not counted
    # class 0: I = 1, U = 1 + 1 + 0 = 2;  class 1: I = 2, U = 2 + 3 - 2 = 3
    assert cm.per_class_iou() == pytest.approx([0.5, 2 / 3])
    assert cm.miou() == pytest.approx((0.5 + 2 / 3) / 2)


def test_set_level_sums_not_per_image_means():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 0, 0, 0]]))  # image 1
    cm.update(torch.tensor([[1, 1, 1]]), torch.tensor([[1, 1, 1]]))  # image 2
    # over the set: class 0 I = 3, U = 4; class 1 I = 3, U = 4 (the mean of per-image IoUs would give class 1
    # (0 + 1) / 2 = 0.5: image 1 has a false positive of class 1 and no class-1 pixel)
    assert cm.per_class_iou() == pytest.approx([0.75, 0.75])


def test_absent_class_is_left_out_of_the_mean():
    ious = per_class_iou(torch.tensor([[2, 0, 0], [0, 1, 0], [0, 0, 0]]))
    assert ious == [1.0, 1.0, None]
    assert mean_iou(ious) == 1.0


def test_bad_label_values_are_named():
    with pytest.raises(ValueError, match=r"\[7\]"):
        ConfusionMatrix(3).update(torch.tensor([0, 1]), torch.tensor([7, 1]))


def test_evaluate_restores_training_mode_and_scores():
    class Fixed(torch.nn.Module):
        def forward(self, x):  # class 1 where the first channel is positive
            self.modes.append(self.training)
            return torch.cat([-x[:, :1], x[:, :1]], dim=1)

    model = Fixed().train()
    model.modes = []
    image = torch.tensor([[[[1.0, -1.0]]]]).expand(1, 3, 1, 2)
    cm = evaluate(model, [{"image": image, "label": torch.tensor([[[1, 1]]])}], 2)
    assert model.modes == [False]  # evaluated in eval mode (BatchNorm's running statistics, no dropout)
    assert model.training
    assert cm.matrix.tolist() == [[0, 0], [1, 1]]


def test_evaluation_pads_to_the_networks_multiple_centrally_and_crops_back():
    seen = []

    class Strided(torch.nn.Module):
        input_multiple = 32  # as the U-Nets

        def forward(self, x):  # class 1 where the first channel is positive
            seen.append(tuple(x.shape[-2:]))
            return torch.cat([-x[:, :1], x[:, :1]], dim=1)

    label = torch.zeros(1, 30, 50, dtype=torch.long)
    label[0, 3:11, 40:47] = 1  # an off-centre block: any shift of the crop would miss it
    image = (2.0 * label - 1.0)[:, None].expand(1, 3, 30, 50)
    cm = evaluate(Strided(), [{"image": image, "label": label}], 2, hflip=False)
    assert seen == [(32, 64)]
    assert cm.matrix.tolist() == [[30 * 50 - 56, 0], [0, 56]]  # every pixel right: padding cropped exactly
    seen.clear()
    evaluate(Strided(), [{"image": torch.ones(1, 3, 64, 32), "label": torch.ones(1, 64, 32, dtype=torch.long)}], 2)
    assert seen == [(64, 32)]  # multiples already: nothing to pad


def test_hole_filling_of_a_padded_batch_sees_each_image_alone():
    """A batch padded to its largest image (``crop``: each image's top, left, height, width): hole filling
    runs on each image's own pixels, so background touching an image's edge stays background even when the
    network calls the padding foreground."""
    class Foreground(torch.nn.Module):  # class 1 wherever channel 0 is below 0.5, per pixel
        def forward(self, x):
            return torch.cat([torch.zeros_like(x[:, :1]), 0.5 - x[:, :1]], 1)

    image = torch.zeros(1, 3, 12, 12)  # padding and image B: foreground
    label = torch.full((1, 12, 12), 255, dtype=torch.long)
    image[0, 0, 2:10, 2:10] = 0.0  # image A (8×8, centred): foreground ...
    label[0, 2:10, 2:10] = 1
    image[0, 0, 5:7, 2:4] = 1.0  # ... with a background notch on its left edge
    label[0, 5:7, 2:4] = 0
    batch = {"image": image, "label": label, "crop": torch.tensor([[2, 2, 8, 8]])}
    preds = []
    confusion = evaluate(Foreground(), [batch], 2, postprocess=fill_holes, on_prediction=lambda b, p: preds.append(p))
    assert confusion.miou() == 1.0 and (preds[0][0, 5:7, 2:4] == 0).all()
    without_crop = evaluate(Foreground(), [{"image": image, "label": label}], 2, postprocess=fill_holes)
    assert without_crop.miou() < 1.0  # the whole padded batch filled: the notch became a hole


def test_hole_filling_on_the_padded_prediction_fills_edge_notches():
    """--fill-holes-padded (the authors' ISIC evaluation): holes are filled on the prediction of the input padded
    to the network's multiple, where padding predicted as foreground encloses a background notch at the edge."""
    class Foreground(torch.nn.Module):  # class 1 wherever channel 0 is below 0.5 (the padding, 0, included)
        input_multiple = 16

        def forward(self, x):
            return torch.cat([torch.zeros_like(x[:, :1]), 0.5 - x[:, :1]], 1)

    image = torch.zeros(1, 3, 12, 12)  # padded to 16×16, 2 px each side
    image[0, 0, 0:3, 0:3] = 1.0  # a background notch in the top-left corner, touching the image's edge
    label = torch.ones(1, 12, 12, dtype=torch.long)
    preds = {}
    for padded in (False, True):
        evaluate(Foreground(), [{"image": image, "label": label}], 2, postprocess=fill_holes,
                 postprocess_padded=padded, on_prediction=lambda b, p, padded=padded: preds.__setitem__(padded, p))
    assert preds[False].shape == preds[True].shape == (1, 12, 12)
    assert (preds[False][0, 0:3, 0:3] == 0).all() and (preds[True] == 1).all()  # enclosed by padding: filled
