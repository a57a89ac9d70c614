"""Video data: readers, list parsing, clip sampling, transforms, datasets and the demo set."""

from .lists import DatasetError, VideoEntry, load_entries
from .sampling import ClipPlan, plan_clip
from .transforms import VideoTransform
from .video_dataset import VideoDataset, build_dataloader
from .video_reader import VideoReadError, open_video, read_frames, video_info
from .video_writer import write_video

__all__ = [
    "ClipPlan",
    "DatasetError",
    "VideoDataset",
    "VideoEntry",
    "VideoReadError",
    "VideoTransform",
    "build_dataloader",
    "load_entries",
    "open_video",
    "plan_clip",
    "read_frames",
    "video_info",
    "write_video",
]
