"""The import paths users and notebooks rely on keep working after the pipeline's split into sub-packages: the
original's (``model.vtoonify``, ``model.encoder.align_all_parallel``, ``util``, ...) and this project's documented
API. A moved module is the same object under its old name, so monkeypatching either name patches both."""
from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    # the original's import paths
    "model.vtoonify": ["VToonify", "ConditionalDiscriminator"],
    "model.dualstylegan": ["DualStyleGAN"],
    "model.stylegan.model": ["Generator", "Discriminator"],
    "model.encoder.psp": ["load_psp_standalone"],
    "model.encoder.align_all_parallel": ["align_face", "get_landmark"],
    "model.bisenet.model": ["BiSeNet"],
    "util": ["save_image", "load_image", "get_video_crop_parameter", "load_psp_standalone"],
    # this project's documented API
    "pipeline.stylize": ["VToonifyPipeline", "ImageResult", "VideoResult", "NoFaceError", "USER_ERRORS", "COMPILE_MODES",
                         "FaceTracker", "resolve_device", "resolve_dtype", "frames_to_tensor", "tensor_to_frames",
                         "parse_frames", "atomic_imwrite", "shard_range", "stylize_video_sharded", "shared_style_encoder"],
    "pipeline.api": ["StyleOptions", "VideoOptions", "stylize_image", "stylize_video"],
    "pipeline.faces": ["FaceDetector", "Face", "CropParams", "DEFAULT_PADDING", "align_face", "apply_crop",
                       "crop_parameters", "landmarks", "landmarks_in_crop", "load_rgb", "select_face",
                       "get_video_crop_parameter", "file_version"],
    "pipeline.video": ["VideoReader", "VideoWriter", "VideoError", "VideoInfo", "probe", "concat_segments",
                       "synthesize_test_video", "synthetic_frames"],
    "pipeline.videoio": ["VideoReader", "VideoWriter", "probe"],
    "pipeline.multiface": ["FACE_MODES", "stylize_image", "stylize_video", "select_faces", "blend", "face_weight",
                           "MultiFaceImageResult", "MultiFaceVideoResult"],
    "pipeline.styles": ["load_exstyle_codes", "save_exstyle_codes"],
    "pipeline.exstyle": ["ExemplarEncoder", "exemplar_code", "add_to_bank", "main"],
    "pipeline.results": ["output_paths", "ImageResult", "VideoResult"],
    "pipeline.sharding": ["shard_range", "stylize_video_sharded", "run_under_torchrun", "world_size"],
    "pipeline.registry": ["PipelineCache", "LRU"],
    # moved modules, under their old names
    "common.atomic": ["atomic_output", "temporary_path"],
    "pipeline.cli": ["run_cli"],
    "common.errors": ["USER_ERRORS", "OptionError", "InputError", "MissingFileError", "DeviceError"],
    "common.options": ["RANGES", "check"],
    "pipeline.images": ["read_image_file", "check_complete"],
    "pipeline.sheets": [],
    "pipeline.released": ["CHECKPOINT_DIR", "files_for", "released_file"],
    "pipeline.fetching": ["fetch"],
    "hub.download": ["main"],
    "pipeline.download_hints": ["missing_file_message"],
    "pipeline.first_run": ["fetch_missing_defaults"],
    # the scripts
    "style_transfer": ["build_parser", "main"],
    "app": ["AppConfig", "AppState", "build_app", "build_parser", "main", "toonify_image", "toonify_video"],
    "figures": ["build_parser", "main"],
    "evaluate": ["build_parser", "main"],
}

MOVED = {"common.atomic": "common.atomic", "pipeline.cli": "common.cli", "common.errors": "common.errors",
         "common.options": "common.options", "pipeline.images": "common.images", "pipeline.sheets": "common.sheets",
         "pipeline.released": "hub.released", "pipeline.fetching": "hub.fetching", "hub.download": "hub.download",
         "pipeline.download_hints": "hub.download_hints", "pipeline.first_run": "hub.first_run"}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_moved_modules_are_the_same_object(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_the_pipeline_methods_go_through_the_one_dispatch(monkeypatch):
    """``VToonifyPipeline.stylize_image`` / ``stylize_video`` hand over to :mod:`pipeline.api` with the options."""
    from pipeline import api
    from pipeline.stylize import VToonifyPipeline

    calls = []
    monkeypatch.setattr(api, "stylize_image", lambda pipe, image, options: calls.append(("image", options)))
    monkeypatch.setattr(api, "stylize_video", lambda pipe, path, out, options, name=None, frame_range=None:
                        calls.append(("video", options, name, frame_range)))
    pipe = VToonifyPipeline.__new__(VToonifyPipeline)
    pipe.stylize_image(None, style_id=3, padding=[1, 2, 3, 4], faces="all")
    pipe.stylize_video("v.mp4", "out", track=True, name="n", frame_range=(0, 2))
    assert calls[0] == ("image", api.StyleOptions(style_id=3, padding=(1, 2, 3, 4), faces="all"))
    assert calls[1] == ("video", api.VideoOptions(track=True), "n", (0, 2))


@pytest.mark.parametrize("options, message", [
    (dict(style_id=True), "style_id must be an integer"),
    (dict(style_id=2.0), "style_id must be an integer"),
    (dict(style_id=-1), r"style_id must be an integer >= 0"),
    (dict(style_degree=1.5), r"style_degree must be in \[0, 1\]"),
    (dict(padding=(1, 2, 3)), "padding must be four numbers"),
    (dict(padding=(0, 0, 0, 0), scale_image=True), "leaves a crop under 8 pixels"),
    (dict(faces="some"), "faces must be one of largest, all"),
    (dict(faces="all", max_faces=0), r"--max_faces must be an integer in \[1, 64\]"),
    (dict(faces="all", max_side=100), "--faces all does not combine with --max_side"),
    (dict(max_side=4), r"max_side must be an integer in \[8, 100000\]"),
])
def test_style_options_are_checked_once(options, message):
    from common.errors import OptionError
    from pipeline.api import StyleOptions

    with pytest.raises(OptionError, match=message):
        StyleOptions(**options).checked()


@pytest.mark.parametrize("options, message", [
    (dict(batch_size=0), r"batch_size must be an integer in \[1, 1024\]"),
    (dict(smooth_parsing=-1), r"smooth_parsing must be an integer in \[0, 64\]"),
    (dict(faces="all", smooth_parsing=2), "--smooth_parsing is not available with --faces all"),
    (dict(faces="all", parsing_map_path="maps.npy"), "--parsing_map_path is not available with --faces all"),
])
def test_video_options_are_checked_once(options, message):
    from common.errors import OptionError
    from pipeline.api import VideoOptions

    with pytest.raises(OptionError, match=message):
        VideoOptions(**options).checked()
    assert VideoOptions().checked() == VideoOptions()  # the defaults are valid
