"""The one picture reader (common/images.py): every kind of file and array gives the RGB uint8 picture by the same
rules, whatever the entry point (--content, --style_image, train_style.py --images, util, the Python API)."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from common.errors import InputError
from common.images import ImageTypeError, NotAnImageError, check_rgb_array, read_image_file, read_rgb

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = data.astronaut()
CROP = np.ascontiguousarray(ASTRONAUT[40:104, 180:228])  # 64x48, not square: a transpose shows
GREY = ASTRONAUT.mean(axis=2).round().astype(np.uint8)


def _cv2_write(path: Path, pixels: np.ndarray) -> Path:
    """Write RGB(A) or grey ``pixels`` (any depth OpenCV writes) with OpenCV."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), pixels)
    return path


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The reference compositing, in float: round(c a + 255 (1 - a)) (no ties: 255 is odd)."""
    a = alpha.astype(np.float64)[..., None] / 255
    return np.round(rgb * a + 255 * (1 - a)).astype(np.uint8)


def _old_content_reader(path: Path) -> np.ndarray:
    """How style_transfer.py read --content before: cv2.imread (EXIF applied), BGR -> RGB."""
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------- bit depth
@pytest.mark.parametrize("suffix", [".png", ".tif"])  # PNG: OpenCV's pixels; TIFF: Pillow's 'I;16' mode
def test_16_bit_grey_is_scaled_not_clipped_to_white(tmp_path, suffix):
    rng = np.random.default_rng(0)
    grey16 = GREY.astype(np.uint16) * 256 + rng.integers(0, 256, GREY.shape, dtype=np.uint16)  # low byte used
    path = _cv2_write(tmp_path / f"g16{suffix}", grey16)
    rgb = read_rgb(path)
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    np.testing.assert_array_equal(rgb[..., 0], np.round(grey16 / 257).astype(np.uint8))  # scaled, rounded
    eight = read_rgb(_cv2_write(tmp_path / "g8.png", GREY))
    assert np.abs(rgb.astype(int) - eight).max() <= 1 and rgb.mean() < 200  # the 8-bit picture, not white


def test_16_bit_colour_png_keeps_its_depth(tmp_path):
    rgb16 = ASTRONAUT.astype(np.uint16) * 256 + np.arange(512, dtype=np.uint16)[None, :, None] % 256
    rgb = read_rgb(_cv2_write(tmp_path / "c16.png", rgb16))
    np.testing.assert_array_equal(rgb, np.round(rgb16 / 257).astype(np.uint8))  # not the high byte (Pillow's)
    assert np.abs(rgb.astype(int) - ASTRONAUT).max() <= 1 and not np.array_equal(rgb, ASTRONAUT)


# ------------------------------------------------------------------------------------ transparency, modes
def test_rgba_and_grey_alpha_are_composited_on_white_like_arrays(tmp_path):
    alpha = np.tile(np.linspace(0, 255, CROP.shape[1]).round().astype(np.uint8), (CROP.shape[0], 1))
    rgba = np.dstack([CROP, alpha])
    expected = _on_white(CROP, alpha)
    np.testing.assert_array_equal(read_rgb(_cv2_write(tmp_path / "rgba.png", rgba)), expected)
    np.testing.assert_array_equal(check_rgb_array(rgba), expected)  # the API: the same rule
    Image.fromarray(rgba).save(tmp_path / "rgba.webp", lossless=True)  # Pillow's pixels: the same rule
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.webp"), expected)
    grey = CROP[..., 1]
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "la.png"), _on_white(np.dstack([grey] * 3), alpha))
    opaque = np.dstack([CROP, np.full(CROP.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(read_rgb(_cv2_write(tmp_path / "opaque.png", opaque)), CROP)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_a_transparent_colour(tmp_path, suffix):
    palette = Image.fromarray(CROP).quantize(16)
    index = np.asarray(palette)
    clear = int(index[0, 0])
    path = tmp_path / f"p{suffix}"
    palette.save(path, transparency=clear)
    colours = np.asarray(palette.convert("RGB"))
    expected = np.where((index == clear)[..., None], np.uint8(255), colours)
    assert (index == clear).any() and (index != clear).any()
    np.testing.assert_array_equal(read_rgb(path), expected)


def test_grey_and_cmyk_jpeg(tmp_path):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(GREY).save(grey, quality=90)
    rgb = read_rgb(grey)
    np.testing.assert_array_equal(rgb, _old_content_reader(grey))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(ASTRONAUT).convert("CMYK").save(cmyk, quality=95)
    with Image.open(cmyk) as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(read_rgb(cmyk), np.asarray(im.convert("RGB")))
    assert np.abs(read_rgb(cmyk).astype(float) - ASTRONAUT).mean() < 4  # colours, not inverted


# --------------------------------------------------------------------------------------- EXIF, decoders
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_as_pillow_applies_it(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(CROP).save(path, exif=exif)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    rgb = read_rgb(path)
    assert rgb.shape == expected.shape and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expected)


def test_jpeg_pixels_are_what_content_photos_always_were(tmp_path):
    """The photos of --content decode as the original's cv2.imread did (JPEG decoders differ between libjpeg
    builds), EXIF orientation included; PNG pixels come from OpenCV too, other formats from Pillow."""
    paths = []
    for i, options in enumerate([dict(quality=75), dict(quality=95, subsampling=0), dict(quality=85, progressive=True)]):
        paths.append(tmp_path / f"q{i}.jpg")
        Image.fromarray(ASTRONAUT).save(paths[-1], **options)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(ASTRONAUT[:, :400]).save(tmp_path / "turned.jpg", exif=exif)
    paths.append(tmp_path / "turned.jpg")
    for path in paths:
        np.testing.assert_array_equal(read_image_file(path), _old_content_reader(path), err_msg=path.name)
    assert read_rgb(tmp_path / "turned.jpg").shape == (400, 512, 3)  # rotated: 6 = 90 degrees clockwise


def test_opencv_decodes_png_and_jpeg_pixels_pillow_the_rest(tmp_path, monkeypatch):
    decoded = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or imdecode(*a))
    Image.fromarray(CROP).save(tmp_path / "a.jpg")
    Image.fromarray(CROP).save(tmp_path / "a.png")
    Image.fromarray(CROP).convert("CMYK").save(tmp_path / "c.jpg")
    Image.fromarray(CROP).save(tmp_path / "a.bmp")
    assert [(read_rgb(tmp_path / n), len(decoded))[1] for n in ("a.jpg", "a.png", "c.jpg", "a.bmp")] == [1, 2, 2, 2]


# ------------------------------------------------------------------------------------------- refusals
def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("side, pixels", [(110, "110x110 = 12,100 pixels"), (200, "40,000 pixels")])
def test_a_decompression_bomb_is_one_line_without_pillows_warning(tmp_path, monkeypatch, capsys, side, pixels):
    """Over Pillow's limit (its warning) or over twice the limit (its error): one line with the size and the limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = _cv2_write(tmp_path / "bomb.png", ASTRONAUT[:side, :side])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError) as error:
            read_rgb(path)
    assert not caught, [str(w.message) for w in caught]
    message = _one_line(error)
    assert message.startswith(f"{path}: the picture is too large to read ({pixels}; the limit is 10,000 pixels)")
    import style_transfer

    assert style_transfer.main(["--content", str(path), "--output_path", str(tmp_path / "out"), "--ckpt", "x.pt"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too large to read" in err and not (tmp_path / "out").exists()


def test_no_pillow_warning_reaches_stderr(tmp_path):
    path = _cv2_write(tmp_path / "bomb.png", ASTRONAUT[:110, :110])
    script = ("import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = 10_000\n"
              "from common.images import read_rgb\n"
              "try: read_rgb(sys.argv[1])\n"
              "except ValueError as e: print(e)\n")
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.stderr == "" and run.stdout.count("\n") == 1 and "too large to read" in run.stdout


def test_truncated_damaged_empty_folder_and_not_an_image(tmp_path):
    whole = tmp_path / "whole.jpg"
    Image.fromarray(ASTRONAUT).save(whole)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError) as error:
        read_rgb(cut)
    assert _one_line(error).startswith(f"{cut}: the image file is truncated")
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(_cv2_write(tmp_path / "ok.png", CROP).read_bytes()[:60] + b"\0" * 500)
    with pytest.raises(InputError, match=r"damaged\.png: the image file is (truncated|damaged)") as error:
        read_rgb(damaged)
    _one_line(error)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a picture")
    for name in ("empty.png", "notes.jpg"):
        with pytest.raises(NotAnImageError, match=f"{name}: not an image") as error:
            read_rgb(tmp_path / name)
        _one_line(error)
    with pytest.raises(NotAnImageError, match=r"\(use --video for videos\)"):  # the command line's hint
        read_image_file(tmp_path / "notes.jpg")
    with pytest.raises(InputError, match="is a folder, not an image file"):
        read_rgb(tmp_path)
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_rgb(tmp_path / "missing.png")


def test_floating_point_pictures_are_refused_in_words(tmp_path):
    Image.fromarray(GREY.astype(np.float32) / 255).save(tmp_path / "f.tif")  # Pillow's 'F' mode
    hdr = _cv2_write(tmp_path / "x.hdr", ASTRONAUT.astype(np.float32) / 255)  # a format only OpenCV reads
    for path in (tmp_path / "f.tif", hdr):
        with pytest.raises(InputError) as error:
            read_rgb(path)
        assert _one_line(error).startswith(f"{path}: a floating-point (high-dynamic-range) picture")


# --------------------------------------------------------------------------------------------- the API
@pytest.mark.parametrize("array, kind, words", [
    (np.zeros((32, 32, 3)), ImageTypeError, "got a float64 array of shape (32, 32, 3) (floating-point values"),
    (np.zeros((32, 32, 3), np.float32), ImageTypeError, "float32 array"),
    (np.zeros((32, 32, 3), np.int64), ImageTypeError, "got a int64 array of shape (32, 32, 3)"),
    (np.zeros((32, 32, 3), bool), ImageTypeError, "got a bool array"),
    (np.zeros((32, 32, 5), np.uint8), InputError, "got a uint8 array of shape (32, 32, 5)"),
    (np.zeros((3, 32, 32), np.uint8), InputError, "got a uint8 array of shape (3, 32, 32)"),
    (np.zeros((32, 32, 3, 1), np.uint8), InputError, "shape (32, 32, 3, 1)"),
    (np.zeros((0, 32, 3), np.uint8), InputError, "shape (0, 32, 3)"),
    (np.zeros(32, np.uint8), InputError, "shape (32,)"),
    ([[0, 1], [2, 3]], ImageTypeError, "got builtins.list"),
])
def test_api_arrays_that_are_not_pictures_are_one_line_errors(array, kind, words):
    with pytest.raises(kind) as error:
        check_rgb_array(array, "image")
    assert words in _one_line(error) and str(error.value).startswith("image: expected")
    assert isinstance(error.value, ValueError)  # InputError; the dtype errors are TypeErrors too
    assert isinstance(error.value, TypeError) == (kind is ImageTypeError)


def test_api_arrays_and_pil_images_that_are_pictures(tmp_path):
    view = ASTRONAUT[::2, ::-1]
    assert check_rgb_array(view) is view  # uint8 RGB: no copy, whatever the strides
    np.testing.assert_array_equal(check_rgb_array(GREY), np.dstack([GREY] * 3))
    np.testing.assert_array_equal(check_rgb_array(GREY[..., None]), np.dstack([GREY] * 3))
    np.testing.assert_array_equal(check_rgb_array(ASTRONAUT.astype(np.uint16) * 257), ASTRONAUT)
    np.testing.assert_array_equal(check_rgb_array((ASTRONAUT.astype(np.uint16) * 257).astype(">u2")), ASTRONAUT)
    assert read_rgb(view).flags.c_contiguous and np.array_equal(read_rgb(view), view)
    with Image.open(_cv2_write(tmp_path / "crop.png", CROP)) as im:  # a PIL image
        np.testing.assert_array_equal(read_rgb(im), CROP)


def test_stylize_image_checks_its_array_before_any_work():
    from test_hostile_inputs import bare_pipeline

    with pytest.raises(ImageTypeError, match=r"image: expected .* got a float64 array of shape \(64, 64, 3\)"):
        bare_pipeline().stylize_image(np.zeros((64, 64, 3)))
    with pytest.raises(InputError, match=r"shape \(64, 64, 5\)"):
        bare_pipeline().stylize_image(np.zeros((64, 64, 5), np.uint8), faces="all")
    with pytest.raises(AssertionError, match="before any work"):  # a grey picture is accepted and goes on
        bare_pipeline().stylize_image(np.zeros((64, 64), np.uint8))


# ------------------------------------------------------------------------------------ every entry point
def _pictures(tmp_path: Path) -> list[Path]:
    """A square EXIF-rotated JPEG and a square palette PNG with a transparent colour."""
    square = np.ascontiguousarray(ASTRONAUT[20:148, 160:288])
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(square).save(tmp_path / "turned.jpg", exif=exif)
    palette = Image.fromarray(square).quantize(32)
    palette.save(tmp_path / "palette.png", transparency=int(np.asarray(palette)[0, 0]))
    return [tmp_path / "turned.jpg", tmp_path / "palette.png"]


def test_the_same_picture_is_the_same_array_through_every_entry_point(tmp_path):
    import torch

    import util
    from pipeline.exstyle import align_exemplar, read_exemplar
    from pipeline.faces import load_rgb
    from training.teacher import align_references

    size = 32
    pictures = _pictures(tmp_path)
    refs = align_references(pictures, tmp_path / "cache", size, aligned=True)
    assert refs.names == [p.name for p in pictures] and not refs.skipped
    for path, aligned in zip(pictures, refs.images):
        content = read_image_file(path)  # style_transfer.py --content
        assert not np.array_equal(content, np.asarray(Image.open(path).convert("RGB")))  # EXIF / transparency count
        for other in (read_rgb(path), load_rgb(path), read_exemplar(path)):
            np.testing.assert_array_equal(other, content)
        if path.suffix == ".png":  # an opened PIL image has Pillow's pixels: the same as OpenCV's for lossless files
            np.testing.assert_array_equal(read_rgb(Image.open(path)), content)
        assert torch.equal(util.load_image(path), util.to_tensor_normalized(content))
        np.testing.assert_array_equal(aligned, align_exemplar(content, None, True, size=size))  # train_style --images


def test_a_training_set_skips_unreadable_pictures_one_line_each(tmp_path, monkeypatch):
    """train_style.py --images: a 16-bit grey picture is read (its face found), a picture over the size limit, a
    truncated one and a text file are listed and skipped; the cache is read back by the same reader."""
    from pipeline.exstyle import align_exemplar
    from pipeline.faces import FaceDetector
    from training.teacher import align_references, list_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300_000)  # the 512x512 astronaut fits
    folder = tmp_path / "set"
    folder.mkdir()
    _cv2_write(folder / "astronaut.png", ASTRONAUT)
    _cv2_write(folder / "grey16.png", GREY.astype(np.uint16) * 257)
    _cv2_write(folder / "big.png", cv2.resize(ASTRONAUT, (600, 600)))
    Image.fromarray(ASTRONAUT).save(folder / "whole.jpg")
    (folder / "cut.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:20_000])
    (folder / "whole.jpg").unlink()
    (folder / "notes.jpg").write_text("not a picture")
    size, detector = 32, FaceDetector()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refs = align_references(list_images([folder]), tmp_path / "cache", size, detector=detector)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert refs.names == ["astronaut.png", "grey16.png"]
    reasons = dict(refs.skipped)
    assert list(reasons) == ["big.png", "cut.jpg", "notes.jpg"] and all("\n" not in r for r in reasons.values())
    assert reasons["big.png"].startswith("the picture is too large to read (600x600 = 360,000 pixels")
    assert reasons["cut.jpg"].startswith("the image file is truncated") and reasons["notes.jpg"].startswith("not an image")
    np.testing.assert_array_equal(refs.images[1], align_exemplar(np.dstack([GREY] * 3), detector, size=size))

    class NoDetector:
        def detect(self, image):
            raise AssertionError("the cache should have been read")

    again = align_references(list_images([folder / "astronaut.png", folder / "grey16.png"]), tmp_path / "cache", size,
                             detector=NoDetector())
    np.testing.assert_array_equal(again.images, refs.images)
    for cached in (tmp_path / "cache").glob("*.png"):  # a damaged cache file is aligned again, not an error
        cached.write_bytes(cached.read_bytes()[:100])
    again = align_references(list_images([folder / "astronaut.png"]), tmp_path / "cache", size, detector=detector)
    np.testing.assert_array_equal(again.images[0], refs.images[0])
