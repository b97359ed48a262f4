import pytest
import torch

from evaluation import ConfusionMatrix, evaluate, mean_iou, per_class_iou


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
    cm.update(torch.tensor([[1]]), torch.tensor([[1]]))  # image 2
    # class 0: I = 3, U = 4; class 1: I = 1, U = 2
    assert cm.per_class_iou() == pytest.approx([0.75, 0.5])


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
            return torch.cat([-x[:, :1], x[:, :1]], dim=1)

    model = Fixed().train()
    image = torch.tensor([[[[1.0, -1.0]]]]).expand(1, 3, 1, 2)
    cm = evaluate(model, [{"image": image, "label": torch.tensor([[[1, 1]]])}], 2)
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
