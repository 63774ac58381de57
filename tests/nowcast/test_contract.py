"""The predictor call contract: the one validator, the missing-frame rule, the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.baselines import get_baseline
from nowcast.contract import check_inputs, last_observed_index, observed_frames

T_IN = torch.tensor([[-12.0, -6.0, 0.0]] * 2)
T_OUT = torch.tensor([[6.0, 12.0]] * 2)


def _x(b: int = 2, t: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(b, t, 1, size, size)


def test_a_valid_call_passes():
    assert check_inputs(_x(), T_IN, T_OUT, torch.ones(2, 3, 1, 16, 16), stride=8) is None


def test_rejects_x_without_the_channel_axis():
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, T_in, 1, H, W\), got \(2, 3, 16, 16\)"
    ):
        check_inputs(torch.rand(2, 3, 16, 16), T_IN, T_OUT)


def test_rejects_x_that_is_not_a_tensor():
    with pytest.raises(ValueError, match=r"x must have shape \(B, T_in, 1, H, W\), got list"):
        check_inputs([1.0], T_IN, T_OUT)


def test_rejects_an_empty_batch():
    with pytest.raises(ValueError, match=r"B >= 1 and T_in >= 1, got shape \(0, 3, 1, 16, 16\)"):
        check_inputs(_x(b=0), T_IN[:0], T_OUT[:0])


def test_rejects_frames_not_a_multiple_of_the_stride():
    with pytest.raises(ValueError, match=r"H, W = 12, 12 .*expected positive multiples of 8"):
        check_inputs(_x(size=12), T_IN, T_OUT, stride=8)


def test_rejects_t_in_of_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"t_in must have shape \(B, T_in\) = \(2, 3\), got \(2, 2\)"
    ):
        check_inputs(_x(), T_IN[:, 1:], T_OUT)


def test_rejects_t_in_as_a_numpy_array():
    with pytest.raises(
        ValueError, match=r"t_in must have shape \(B, T_in\) = \(2, 3\), got \(2, 3\)"
    ):
        check_inputs(_x(), T_IN.numpy(), T_OUT)


def test_rejects_t_out_of_another_batch():
    with pytest.raises(
        ValueError, match=r"t_out must have shape \(B, T_out\) with B = 2, got \(3, 2\)"
    ):
        check_inputs(_x(), T_IN, torch.tensor([[6.0, 12.0]] * 3))


def test_rejects_no_lead_time():
    with pytest.raises(ValueError, match=r"t_out must hold at least one time, got shape \(2, 0\)"):
        check_inputs(_x(), T_IN, T_OUT[:, :0])


def test_rejects_a_mask_of_another_shape():
    with pytest.raises(
        ValueError,
        match=r"input_mask must have the shape of x \(2, 3, 1, 16, 16\), got \(2, 3, 1, 8, 8\)",
    ):
        check_inputs(_x(), T_IN, T_OUT, torch.ones(2, 3, 1, 8, 8))


def test_rejects_non_finite_times():
    with pytest.raises(ValueError, match="t_in and t_out must be finite"):
        check_inputs(_x(), T_IN, torch.tensor([[6.0, float("nan")]] * 2))


def test_rejects_unsorted_input_times():
    with pytest.raises(ValueError, match="t_in must increase strictly along time"):
        check_inputs(_x(), torch.tensor([[-6.0, -12.0, 0.0]] * 2), T_OUT)


def test_rejects_unsorted_lead_times():
    with pytest.raises(ValueError, match=r"t_out must increase strictly along time, got \[\[12"):
        check_inputs(_x(), T_IN, torch.tensor([[12.0, 6.0]] * 2))


def test_rejects_a_lead_time_at_the_last_input_time():
    with pytest.raises(
        ValueError, match=r"t_out must lie after the last input time, got t_out\[:, 0\] = \[0.0"
    ):
        check_inputs(_x(), T_IN, torch.tensor([[0.0, 6.0]] * 2))


@pytest.mark.parametrize("name", ["persistence", "pysteps"])
def test_baselines_share_the_validator(name):
    with pytest.raises(ValueError, match="t_out must lie after the last input time"):
        get_baseline(name)(_x(), T_IN, torch.tensor([[-6.0, 6.0]] * 2))


def test_models_share_the_validator():
    from nowcast.models import get_model
    from tests.nowcast.test_models import TINY

    model = get_model("convgru", TINY)
    with pytest.raises(ValueError, match="t_out must lie after the last input time"):
        model(_x(), T_IN, torch.tensor([[-6.0, 6.0]] * 2))


def test_observed_frames_and_the_last_observed_one():
    mask = torch.zeros(3, 4, 1, 2, 2)
    mask[0, 1, 0, 0, 0] = 1.0  # sample 0: frames 1 and 2 observed
    mask[0, 2] = 1.0
    mask[1] = 1.0  # sample 1: all observed; sample 2: none
    obs = observed_frames(mask, (3, 4))
    np.testing.assert_array_equal(
        obs, [[False, True, True, False], [True, True, True, True], [False] * 4]
    )
    np.testing.assert_array_equal(last_observed_index(obs, required=False), [2, 3, 3])
    np.testing.assert_array_equal(observed_frames(None, (2, 3)), np.ones((2, 3), bool))


def test_last_observed_index_names_the_samples_with_no_frame():
    obs = np.array([[True, False], [False, False], [False, False]])
    with pytest.raises(ValueError, match=r"samples \[1, 2\] have no observed input frame"):
        last_observed_index(obs)
