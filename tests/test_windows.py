"""Whole-video window plans and stitching (sweettok.data.windows)."""

from __future__ import annotations

import pytest
import torch

from sweettok.data.windows import WindowPlan, plan_windows, stitch_windows


def test_back_to_back_windows_cover_every_frame_once_when_stitched():
    plan = plan_windows(250, 17, 1.0)
    assert plan.starts == list(range(0, 233, 17)) + [233]  # the 15th window moved back to end at frame 249
    assert sum(plan.kept(i) for i in range(plan.num_windows)) == 250 and plan.padded_frames == 0
    assert all(len(plan.window(i)) == 17 for i in range(plan.num_windows)) and plan.window(14)[-1] == 249


def test_start_step_and_overlapping_stride():
    plan = plan_windows(100, 17, 2.0, start_frame=10, stride=8)
    assert plan.frame_indices == list(range(10, 100, 2)) and plan.num_sampled == 45
    assert plan.starts == [0, 8, 16, 24, 28]
    assert plan.window(1) == list(range(26, 60, 2))


def test_fractional_step_rounds_per_frame():
    assert plan_windows(12, 3, 30 / 8).frame_indices == [0, 4, 8, 11]


def test_short_video_is_one_padded_window():
    plan = plan_windows(5, 17, 1.0)
    assert plan.starts == [0] and plan.padded_frames == 12 and plan.window(0) == [0, 1, 2, 3] + [4] * 13
    assert plan.kept(0) == 5


def test_max_windows_cuts_the_video():
    plan = plan_windows(250, 17, 1.0, max_windows=3)
    assert plan.starts == [0, 17, 34] and plan.num_sampled == 51


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 18}, "window stride must be between 1 and 17"),
    ({"start_frame": 250}, "start frame 250 is outside"),
    ({"step": 0.0}, "frame step must be positive"),
])
def test_bad_plans_are_refused(kwargs, message):
    args = {"num_available": 250, "num_frames": 17, "step": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_windows(**args)


def test_stitch_takes_each_frame_from_the_first_window_holding_it():
    plan = plan_windows(40, 17, 1.0, stride=12)  # starts 0, 12, 23
    windows = torch.stack([torch.full((1, 17, 1, 1), float(i)) for i in range(plan.num_windows)])
    windows = windows + torch.arange(17.0).view(1, 1, 17, 1, 1) / 100  # value = window + position / 100
    video = stitch_windows(windows, plan)[0, :, 0, 0]
    assert plan.starts == [0, 12, 23] and video.shape == (40,)
    assert torch.allclose(video[:12], torch.arange(12.0) / 100)
    assert torch.allclose(video[12:23], 1 + torch.arange(11.0) / 100)
    assert torch.allclose(video[23:], 2 + torch.arange(17.0) / 100)
    with pytest.raises(ValueError, match="expected 3 windows of 17 frames"):
        stitch_windows(windows[:2], plan)


def test_plan_round_trips_through_its_dict():
    plan = plan_windows(60, 17, 1.5, start_frame=3)
    assert WindowPlan(**plan.to_dict()) == plan
