"""Image folders as calibration/evaluation data: real PNG and JPEG files written with Pillow, decoded for real."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgefarm.compressors.errors import CompressorError
from edgefarm.compressors.images import (
    ImageDataError,
    Preprocess,
    apply,
    folder_to_npz,
    is_image_folder,
    parse_preprocess,
)
from edgefarm.compressors.npz_data import ModelInput, load_inputs, load_labels

IMAGENET = "size=4x2,scale=1/255,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"
PIXEL = (255, 0, 128)


def write_image(path: Path, color: tuple[int, int, int] = PIXEL, size: tuple[int, int] = (4, 2)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)  # the format follows the suffix: .png or .jpg
    return path


def expected_imagenet(pixel: tuple[int, int, int]) -> list[float]:
    """The formula done by hand in Python floats, rounded once to float32."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return [float(np.float32((p * (1 / 255) - m) / s)) for p, m, s in zip(pixel, mean, std, strict=True)]


def load(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


# --- parse_preprocess ---------------------------------------------------------------------------

def test_parse_full_spec() -> None:
    spec = parse_preprocess("size=320x240, scale=1/255, mean=0.485/0.456/0.406, std=0.229/0.224/0.225,"
                            "layout=NHWC, color=bgr")
    assert spec == Preprocess(320, 240, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "nhwc", "bgr")


def test_parse_defaults_and_decimal_scale() -> None:
    assert parse_preprocess("size=8x6") == Preprocess(8, 6, 1 / 255, (0.0,), (1.0,), "nchw", "rgb")
    assert parse_preprocess("size=8x6,scale=0.5,mean=0.5,std=2").scale == 0.5


def test_text_round_trips_exactly() -> None:
    spec = parse_preprocess("size=4x2,color=gray,mean=0.5,std=0.25,layout=nhwc")
    assert parse_preprocess(spec.text()) == spec
    assert spec.text() == "size=4x2,scale=0.00392156862745098,mean=0.5,std=0.25,layout=nhwc,color=gray"


@pytest.mark.parametrize(("text", "says"), [
    ("scale=1/255", "has no size, which is required; write e.g. size=320x320 (WIDTHxHEIGHT)"),
    ("size=320", "size '320' is not WIDTHxHEIGHT; write e.g. size=320x320"),
    ("size=axb", "size 'axb' is not WIDTHxHEIGHT"),
    ("size=-3x3", "size '-3x3' is not WIDTHxHEIGHT"),
    ("size=0x320", "size 0x320 is below 1x1; write e.g. size=320x320"),
    ("size=320x0", "size 320x0 is below 1x1"),
    ("size=8x8,colour=rgb", "'colour=rgb' in 'size=8x8,colour=rgb' has an unknown key; the keys are size="),
    ("size=8x8,size=9x9", "'size=9x9' in 'size=8x8,size=9x9' repeats"),
    ("size=8x8,nchw", "'nchw' in 'size=8x8,nchw' is not key=value"),
    ("size=8x8,", "'' in 'size=8x8,' is not key=value"),
    ("size=8x8,scale=abc", "scale 'abc' is not a number; write e.g. scale=1/255"),
    ("size=8x8,scale=1/x", "scale 'x' is not a number"),
    ("size=8x8,scale=1/0", "scale '1/0' divides by zero"),
    ("size=8x8,scale=0", "scale 0.0 is 0 or not finite"),
    ("size=8x8,scale=inf", "scale inf is 0 or not finite"),
    ("size=8x8,mean=a/b/c", "mean 'a' is not a number; write e.g. mean=0.485/0.456/0.406"),
    ("size=8x8,mean=0.5/0.5", "mean has 2 values but color=rgb takes 1 or 3"),
    ("size=8x8,std=nan", "std (nan,) is not finite"),
    ("size=8x8,color=gray,mean=0.1/0.2/0.3", "mean has 3 values but color=gray takes 1"),
    ("size=8x8,color=gray,std=1/1/1", "std has 3 values but color=gray takes 1"),
    ("size=8x8,std=0.2/0/0.2", "std (0.2, 0.0, 0.2) has a 0, which would divide by zero"),
    ("size=8x8,std=0", "std (0.0,) has a 0"),
    ("size=8x8,layout=nwhc", "layout 'nwhc' is unknown; write e.g. layout=nchw or nhwc"),
    ("size=8x8,color=cmyk", "color 'cmyk' is unknown; write e.g. color=rgb, bgr or gray"),
])
def test_parse_errors_name_the_key_and_the_valid_form(text: str, says: str) -> None:
    with pytest.raises(ImageDataError) as raised:
        parse_preprocess(text)
    message = str(raised.value)
    assert message.startswith("--preprocess: ") and says in message
    assert "\n" not in message


def test_image_data_error_is_caught_as_a_user_error() -> None:
    # The CLI reports CompressorError as a one-line message instead of a traceback.
    assert issubclass(ImageDataError, CompressorError) and issubclass(ImageDataError, ValueError)


# --- apply ----------------------------------------------------------------------------------------

def test_apply_exact_values_nchw(tmp_path: Path) -> None:
    with Image.open(write_image(tmp_path / "a.png")) as image:
        sample = apply(image, parse_preprocess(IMAGENET))
    assert sample.dtype == np.float32 and sample.shape == (3, 2, 4)
    for channel, value in enumerate(expected_imagenet(PIXEL)):
        assert np.all(sample[channel] == np.float32(value)), channel


def test_apply_exact_values_nhwc(tmp_path: Path) -> None:
    with Image.open(write_image(tmp_path / "a.png")) as image:
        sample = apply(image, parse_preprocess(IMAGENET + ",layout=nhwc"))
    assert sample.shape == (2, 4, 3)
    assert np.all(sample == np.array(expected_imagenet(PIXEL), dtype=np.float32))


def test_apply_scale_without_mean_or_std(tmp_path: Path) -> None:
    with Image.open(write_image(tmp_path / "a.png")) as image:
        sample = apply(image, parse_preprocess("size=4x2,scale=1,mean=128,std=2"))
    assert sample[:, 0, 0].tolist() == [63.5, -64.0, 0.0]


def test_bgr_reverses_channels_and_their_mean_and_std_follow(tmp_path: Path) -> None:
    with Image.open(write_image(tmp_path / "a.png")) as image:
        sample = apply(image, parse_preprocess("size=4x2,scale=1,mean=10/20/30,color=bgr,layout=nhwc"))
    # Channel 0 is blue now, and mean[0] applies to it: means are given in the output channel order.
    assert sample[0, 0].tolist() == [128 - 10, 0 - 20, 255 - 30]


def test_gray_gives_one_channel(tmp_path: Path) -> None:
    with Image.open(write_image(tmp_path / "a.png")) as image:
        luma = np.asarray(image.convert("L"))[0, 0]
        chw = apply(image, parse_preprocess("size=4x2,color=gray,scale=1"))
        hwc = apply(image, parse_preprocess("size=4x2,color=gray,scale=1,layout=nhwc"))
    assert chw.shape == (1, 2, 4) and hwc.shape == (2, 4, 1)
    assert 0 < luma < 255 and np.all(chw == luma) and np.all(hwc == luma)


def test_resize_is_width_by_height(tmp_path: Path) -> None:
    with Image.open(write_image(tmp_path / "a.jpg", size=(40, 30))) as image:
        assert apply(image, parse_preprocess("size=16x8")).shape == (3, 8, 16)
        assert apply(image, parse_preprocess("size=16x8,layout=nhwc")).shape == (8, 16, 3)


def test_apply_converts_palette_and_alpha_images(tmp_path: Path) -> None:
    Image.new("RGBA", (5, 5), (*PIXEL, 40)).save(tmp_path / "alpha.png")
    Image.new("RGB", (5, 5), PIXEL).convert("P").save(tmp_path / "palette.png")
    for name in ("alpha.png", "palette.png"):
        with Image.open(tmp_path / name) as image:
            sample = apply(image, parse_preprocess("size=2x2,scale=1,layout=nhwc"))
        assert sample[0, 0].tolist() == list(PIXEL), name


# --- folder_to_npz --------------------------------------------------------------------------------

def test_flat_folder_gives_x_without_labels_in_sorted_order(tmp_path: Path) -> None:
    data = tmp_path / "images"
    write_image(data / "b.png", (0, 0, 0))
    write_image(data / "a.png", PIXEL)
    write_image(data / "c.jpg", (200, 200, 200), size=(64, 48))
    arrays = load(folder_to_npz(data, parse_preprocess(IMAGENET), tmp_path / "cache"))
    assert sorted(arrays) == ["x"]
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (3, 3, 2, 4)
    assert arrays["x"][0, :, 0, 0].tolist() == expected_imagenet(PIXEL)  # a.png first
    assert arrays["x"][1, :, 0, 0].tolist() == expected_imagenet((0, 0, 0))
    assert np.allclose(arrays["x"][2, :, 0, 0], expected_imagenet((200, 200, 200)), atol=0.05)  # JPEG is lossy


def test_class_subfolders_give_labels_in_sorted_order(tmp_path: Path) -> None:
    data = tmp_path / "images"
    write_image(data / "dog" / "b.png", (3, 3, 3))
    write_image(data / "dog" / "a.jpg", (2, 2, 2))
    write_image(data / "cat" / "z.png", (1, 1, 1))
    write_image(data / "ant" / "deep" / "x.png", (0, 0, 0))
    (data / "empty").mkdir()  # no files: not a class
    npz = folder_to_npz(data, parse_preprocess("size=4x2,scale=1,layout=nhwc"), tmp_path / "cache")
    arrays = load(npz)
    assert arrays["y"].dtype == np.int64 and arrays["y"].tolist() == [0, 1, 2, 2]
    assert np.rint(arrays["x"][:, 0, 0, 0]).tolist() == [0, 1, 2, 3]  # ant/deep/x, cat/z, dog/a, dog/b
    # The rest of the code reads it exactly as an .npz written by hand.
    inputs = load_inputs(npz, [ModelInput("x", ("batch", 2, 4, 3), np.dtype(np.float32))], ValueError, "test")
    assert load_labels(npz, len(inputs["x"]), "test").tolist() == [0, 1, 2, 2]


def test_input_name_names_the_array(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png")
    arrays = load(folder_to_npz(tmp_path / "images", parse_preprocess("size=4x2"), tmp_path / "cache", "pixel_values"))
    assert sorted(arrays) == ["pixel_values"]


def test_files_beside_class_subfolders_are_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    data = tmp_path / "images"
    write_image(data / "cat" / "a.png")
    (data / "LICENSE").write_text("CC-BY")
    with caplog.at_level(logging.WARNING, logger="edgefarm.compressors.images"):
        arrays = load(folder_to_npz(data, parse_preprocess("size=4x2"), tmp_path / "cache", context="--eval-data"))
    assert arrays["y"].tolist() == [0]
    assert "--eval-data: ignored 1 files beside the class subfolders" in caplog.text and "LICENSE" in caplog.text


def test_stray_files_are_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    data = tmp_path / "images"
    write_image(data / "a.png")
    (data / "b-notes.txt").write_text("not an image")
    (data / "c-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (data / ".DS_Store").write_bytes(b"\0" * 16)  # hidden: not even tried
    with caplog.at_level(logging.WARNING, logger="edgefarm.compressors.images"):
        arrays = load(folder_to_npz(data, parse_preprocess("size=4x2"), tmp_path / "cache", context="--calib-data"))
    assert arrays["x"].shape == (1, 3, 2, 4)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--calib-data: skipped 2 files Pillow cannot decode" in warnings[0] and "b-notes.txt" in warnings[0]


def test_empty_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(ImageDataError, match="no decodable image") as raised:
        folder_to_npz(tmp_path / "images", parse_preprocess("size=4x2"), tmp_path / "cache", context="--calib-data")
    assert str(raised.value).startswith(f"--calib-data: no decodable image in {tmp_path / 'images'} (0 files tried)")


def test_folder_of_junk_is_an_error_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "images"
    data.mkdir()
    (data / "a.txt").write_text("text")
    (data / "b.csv").write_text("1,2")
    with pytest.raises(ImageDataError) as raised:
        folder_to_npz(data, parse_preprocess("size=4x2"), tmp_path / "cache", context="--eval-data")
    assert f"--eval-data: no decodable image in {data} (2 files tried); put PNG or JPEG" in str(raised.value)
    assert not list((tmp_path / "cache").rglob("*.npz"))


def test_missing_folder_and_file_are_errors(tmp_path: Path) -> None:
    spec = parse_preprocess("size=4x2")
    with pytest.raises(ImageDataError, match=f"--calib-data: {tmp_path / 'nope'} does not exist"):
        folder_to_npz(tmp_path / "nope", spec, tmp_path / "cache", context="--calib-data")
    (tmp_path / "data.npz").write_bytes(b"")
    with pytest.raises(ImageDataError, match="is not a folder"):
        folder_to_npz(tmp_path / "data.npz", spec, tmp_path / "cache")


def test_is_image_folder(tmp_path: Path) -> None:
    (tmp_path / "data.npz").write_bytes(b"")
    assert is_image_folder(tmp_path)
    assert not is_image_folder(tmp_path / "data.npz") and not is_image_folder(tmp_path / "missing")


# --- the cache ------------------------------------------------------------------------------------

def test_same_folder_and_spec_return_the_same_untouched_file(tmp_path: Path) -> None:
    data, cache = tmp_path / "images", tmp_path / "cache"
    write_image(data / "a.png")
    first = folder_to_npz(data, parse_preprocess(IMAGENET), cache)
    before = first.stat()
    content = first.read_bytes()
    second = folder_to_npz(data, parse_preprocess(IMAGENET), cache)
    after = second.stat()
    assert second == first and first.parent == cache / "image-data" and first.suffix == ".npz"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.read_bytes() == content
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no temp file left behind


def test_a_changed_image_spec_or_input_name_gives_another_entry(tmp_path: Path) -> None:
    data, cache = tmp_path / "images", tmp_path / "cache"
    write_image(data / "a.png")
    spec = parse_preprocess(IMAGENET)
    original = folder_to_npz(data, spec, cache)
    paths = {original, folder_to_npz(data, parse_preprocess(IMAGENET + ",layout=nhwc"), cache),
             folder_to_npz(data, spec, cache, "images")}
    write_image(data / "a.png", (1, 2, 3))
    changed = folder_to_npz(data, spec, cache)
    paths.add(changed)
    assert len(paths) == 4
    assert load(changed)["x"][0, :, 0, 0].tolist() == expected_imagenet((1, 2, 3))
    assert load(original)["x"][0, :, 0, 0].tolist() == expected_imagenet(PIXEL)  # the old entry is kept as it was


def test_a_renamed_file_gives_another_entry(tmp_path: Path) -> None:
    data, cache = tmp_path / "images", tmp_path / "cache"
    write_image(data / "cat" / "a.png", (1, 1, 1))
    write_image(data / "dog" / "b.png", (2, 2, 2))
    spec = parse_preprocess("size=4x2,scale=1")
    first = folder_to_npz(data, spec, cache)
    (data / "dog").rename(data / "bird")  # same bytes, but bird/b.png now sorts first and is class 0
    second = folder_to_npz(data, spec, cache)
    assert second != first
    assert load(first)["x"][:, 0, 0, 0].tolist() == [1, 2] and load(second)["x"][:, 0, 0, 0].tolist() == [2, 1]
