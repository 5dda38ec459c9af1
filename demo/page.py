"""The demo's page: Gradio controls wired to the handlers of :mod:`demo.handlers` (the only module that needs Gradio)."""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from common.options import RANGES
from demo.config import RESULT_MAX_AGE, THUMBNAIL_SIZE, AppConfig
from demo.handlers import EXPECTED_ERRORS, describe_video, fetch_model, style_thumbnail, toonify_image, toonify_video
from demo.state import AppState
from pipeline.precision import FAST_TOGGLE_INFO, fast_mode_available
from pipeline.samples import sample_photo
from pipeline.stylize import resolve_device

__all__ = ["build_app"]

#: Seconds the page build waits for the hub to tell the sizes of the released styles (later: at the next load or pick).
SIZES_WAIT = 1.0


def _intro(config: AppConfig) -> str:
    limits = []
    if config.max_video_seconds is not None:
        limits.append(f"{config.max_video_seconds:g} s")
    if config.max_video_frames is not None:
        limits.append(f"{config.max_video_frames} frames")
    videos = f"Videos up to {' and '.join(limits)}" if limits else "Videos of any length"
    released = (" The released styles not on this machine yet are listed too, marked *download*: picking one fetches "
                "it (once) into the checkpoint folder." if config.downloadable else "")
    return (
        "# VToonify\n"
        "Toonify a portrait photo or a short video with the VToonify models on this machine "
        f"(running on {resolve_device(config.device).type.upper()}). Pick a model and a style, upload a photo or "
        "a video (or use a sample) and press *Toonify*. "
        f"{videos}; they keep their audio. The thumbnail next to the style id is the exemplar's style code "
        "as the model's DualStyleGAN renders it." + released
    )


def build_app(config: AppConfig, state: AppState | None = None) -> gr.Blocks:
    """The page; ``state`` (default: a new :class:`AppState` of ``config``) holds the models."""
    state = state if state is not None else AppState(config)

    def fetch_picked(label: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Any:  # noqa: B008
        """Download a released style when it is picked, its progress over the style note; a failure is one line (a
        gr.Error), and the model list stays usable."""
        _, message = fetch_model(state, label, progress)
        if message is not None:
            raise gr.Error(message)
        return gr.update()

    def on_model(label: str, current: float) -> tuple[Any, Any, Any]:
        """Fit the style controls to the chosen model (loading it)."""
        try:
            info = state.model_info(label)
        except EXPECTED_ERRORS:  # reported by the thumbnail step that follows
            return gr.update(), gr.update(), gr.update()
        if not info.is_dual:
            return gr.update(interactive=False), gr.update(interactive=False), gr.update(value=False, interactive=False)
        n = len(info.style_names)
        style = int(current) if 0 <= current < n else info.default_style_id
        return (gr.update(minimum=0, maximum=n - 1, value=style, interactive=True), gr.update(interactive=True),
                gr.update(value=info.color_transfer_model, interactive=True))

    def show_style(label: str, style: float) -> tuple[np.ndarray | None, str]:
        return style_thumbnail(state, label, int(style))

    # Gradio recognises a handler's progress tracker by its default value, hence the calls in the defaults.
    def run_photo(upload: dict[str, Any] | None, label: str, style: float, degree: float, color: bool, crop: bool,
                  fast_on: bool, exemplar: str | None, aligned: bool, which: str = "largest",
                  progress: gr.Progress = gr.Progress()) -> tuple[np.ndarray | None, str]:  # noqa: B008
        """Runs without Gradio's preprocessing: ``upload`` is the uploaded file's description, and the file
        is decoded by :func:`toonify_image`, which says what is wrong with one Pillow cannot read (Gradio's
        own decoding would fail before the handler, with a bare "Error" on the page)."""
        path = upload.get("path") if upload else None
        return toonify_image(state, path, label, int(style), degree, color, crop, progress=progress, fast=fast_on,
                             style_image=exemplar, style_aligned=aligned, faces=which)

    def run_video(video: str | None, label: str, style: float, degree: float, color: bool, crop: bool, fast_on: bool,
                  track: bool, smooth: float, exemplar: str | None, aligned: bool, which: str = "largest",
                  progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str | None, str]:  # noqa: B008
        return toonify_video(state, video, label, int(style), degree, color, crop, track, int(smooth), progress=progress,
                             fast=fast_on, style_image=exemplar, style_aligned=aligned, faces=which)

    def check_video(video: str | None) -> str:
        return describe_video(state, video)

    def use_sample_video() -> tuple[str, str]:
        path = state.sample_video()
        return str(path), describe_video(state, path)

    with gr.Blocks(title="VToonify", analytics_enabled=False, delete_cache=(RESULT_MAX_AGE, RESULT_MAX_AGE)) as demo:
        gr.Markdown(_intro(config))
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                model = gr.Dropdown(state.model_choices(wait=SIZES_WAIT), value=config.labels[0], label="Model",
                                    elem_id="model")
                style_id = gr.Slider(0, 1, value=0, step=1, label="Style id", info="the exemplar style (VToonify-D)",
                                     elem_id="style-id")
                with gr.Row(equal_height=True):
                    thumbnail = gr.Image(label="Style", height=THUMBNAIL_SIZE, width=THUMBNAIL_SIZE, interactive=False,
                                         buttons=[], show_label=False, scale=0, min_width=THUMBNAIL_SIZE,
                                         elem_id="style-thumbnail")
                    style_note = gr.Markdown(elem_id="style-note")
                degree = gr.Slider(RANGES["style_degree"].low, RANGES["style_degree"].high, value=0.5, step=0.05,
                                   label="Style degree",
                                   info="0: the face as it is ... 1: the full style", elem_id="style-degree")
                color_transfer = gr.Checkbox(False, label="Colour transfer", elem_id="color-transfer",
                                             info="use the exemplar's colours too "
                                                  "(what the vtoonify_s_d_c.pt models are trained for)")
                crop = gr.Checkbox(True, label="Crop around the face", elem_id="crop",
                                   info="rescale so that the eyes are 64 px apart and crop; the result is 4x the input")
                fast = gr.Checkbox(False, label="Fast (bfloat16)", elem_id="fast", info=FAST_TOGGLE_INFO,
                                   visible=fast_mode_available(config.device, config.dtype, engine=config.engine))
                with gr.Accordion("Your own exemplar (VToonify-D)", open=False):
                    exemplar = gr.Image(label="Style image", type="filepath", sources=["upload", "clipboard"],
                                        elem_id="style-image")
                    exemplar_aligned = gr.Checkbox(False, label="Already an aligned face", elem_id="style-aligned",
                                                   info="a square face crop (drawings where no face is found)")
                faces = gr.Radio(["largest", "all"], value="largest", label="Faces", elem_id="faces",
                                 info="largest: one face sets the scale and style; all: every face at its own scale "
                                      "(one more model pass per face)")
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Photo", id="photo"):
                    with gr.Row():
                        photo = gr.Image(label="Photo", format="png", sources=["upload", "webcam", "clipboard"],
                                         elem_id="photo-input")
                        photo_result = gr.Image(label="Result", format="png", interactive=False,
                                                buttons=["download", "fullscreen"], elem_id="photo-output")
                    with gr.Row():
                        photo_sample = gr.Button("Use the sample photo", elem_id="photo-sample")
                        photo_run = gr.Button("Toonify photo", variant="primary", elem_id="run-photo")
                    photo_status = gr.Markdown(elem_id="photo-status")
                with gr.Tab("Video", id="video"):
                    with gr.Row():
                        video = gr.Video(label="Video", sources=["upload"], include_audio=True, elem_id="video-input")
                        video_result = gr.Video(label="Result", interactive=False, buttons=["download"],
                                                elem_id="video-output")
                    with gr.Accordion("Video options", open=False):
                        track = gr.Checkbox(False, label="Follow the face", elem_id="track",
                                            info="move the crop with a moving face (smoothed); the size stays fixed")
                        smooth = gr.Slider(0, 4, value=0, step=1, label="Reduce flicker", elem_id="smooth-parsing",
                                           info="smooth the face-parsing maps over ±N frames (0: off, 2 is typical)")
                    with gr.Row():
                        video_sample = gr.Button("Use the sample video", elem_id="video-sample")
                        video_run = gr.Button("Toonify video", variant="primary", elem_id="run-video")
                    video_status = gr.Markdown(elem_id="video-status")

        style_inputs, style_outputs = [model, style_id], [thumbnail, style_note]
        # the list is refreshed after each pick: a style just fetched loses its marker, sizes told late appear
        gr.on([demo.load, model.change], fetch_picked, model, style_note, concurrency_limit=None) \
            .success(lambda: gr.update(choices=state.model_choices()), None, model, show_progress="hidden") \
            .success(on_model, [model, style_id], [style_id, degree, color_transfer]) \
            .then(show_style, style_inputs, style_outputs, concurrency_id="thumbnail")
        style_id.input(show_style, style_inputs, style_outputs, trigger_mode="always_last", concurrency_id="thumbnail")

        photo_sample.click(sample_photo, None, photo)
        photo_run.click(run_photo, [photo, model, style_id, degree, color_transfer, crop, fast, exemplar, exemplar_aligned,
                         faces],
                        [photo_result, photo_status],
                        preprocess=False, concurrency_id="stylize", concurrency_limit=1)

        video.upload(check_video, video, video_status)
        video_sample.click(use_sample_video, None, [video, video_status])
        video_run.click(run_video, [video, model, style_id, degree, color_transfer, crop, fast, track, smooth, exemplar,
                                    exemplar_aligned, faces],
                        [video_result, video_status], concurrency_id="stylize", concurrency_limit=1)
    return demo
