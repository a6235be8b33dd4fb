"""One image file: the decompression-bomb guard, channels (RGB or luminance), fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixelprior.data import (
    MAX_PIXELS_ENV,
    DataError,
    ImageFile,
    ImageTooLargeError,
    fit_image,
    load_csv,
    load_dataset,
    load_folder,
    read_image_file,
)

BOMB_SIDE = 13_500  # 182.25 megapixels: past PIL's 178.9-megapixel refusal


@pytest.fixture
def bomb(tmp_path, huge_png_bytes):
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png_bytes(BOMB_SIDE, BOMB_SIDE))
    return path


@pytest.fixture
def photo(tmp_path, sample):
    path = tmp_path / "photo.png"
    Image.fromarray(sample.images[7].permute(1, 2, 0).numpy()).save(path)
    return path


# ----------------------------------------------------------------------------- size limit
def test_a_180_megapixel_png_is_one_line_naming_file_and_size(bomb, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    with pytest.raises(ImageTooLargeError) as caught:
        read_image_file(bomb)
    assert str(caught.value) == (
        f"cannot read image {bomb}: it is 13500×13500 (182.2 megapixels), over the "
        "179.0-megapixel limit against decompression bombs; resize it, or if you trust the "
        f"file set {MAX_PIXELS_ENV}=182250000 (in Python: PIL.Image.MAX_IMAGE_PIXELS = None)")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's own setting is left as it was


def test_a_bomb_in_a_folder_is_the_same_line(bomb, tmp_path, photo):
    root = tmp_path / "r"
    (root / "cat").mkdir(parents=True)
    bomb.rename(root / "cat" / "bomb.png")
    with pytest.raises(ImageTooLargeError, match=r"bomb.png: it is 13500×13500"):
        load_folder(root)


def test_the_cli_says_it_in_one_line_without_a_traceback(bomb, tmp_path):
    from pixelprior.cli import app

    result = CliRunner().invoke(app, ["attack", str(bomb), "--out", str(tmp_path / "out")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "13500×13500 (182.2 megapixels)" in errors[0], result.output
    assert not (tmp_path / "out").exists()


def test_the_limit_can_be_moved(photo, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "1023")
    with pytest.raises(ImageTooLargeError, match=r"32×32 \(0.0 megapixels\), over the "
                       r"0.0-megapixel limit"):
        read_image_file(photo)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1024")
    assert read_image_file(photo).size == (32, 32)
    monkeypatch.setenv(MAX_PIXELS_ENV, "none")
    assert read_image_file(photo).size == (32, 32)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(DataError) as caught:
        read_image_file(photo)
    assert str(caught.value) == (f"${MAX_PIXELS_ENV} must be a positive number of pixels (or "
                                 "none), got 'lots'")


def test_pils_own_setting_is_the_default_limit(photo, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 511)
    with pytest.raises(ImageTooLargeError, match="over the 0.0-megapixel limit"):
        read_image_file(photo)
    assert Image.MAX_IMAGE_PIXELS == 511
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image_file(photo).size == (32, 32)


# ----------------------------------------------------------------------------- channels
def test_channels_one_is_pils_luminance_with_a_note(photo, tmp_path, sample):
    read = read_image_file(photo, channels=1)
    expected = np.asarray(Image.open(photo).convert("L"))
    assert read.pixels.shape == (32, 32, 1) and read.channels == 1
    assert np.array_equal(read.pixels[..., 0], expected)
    assert read.notes == ['RGB converted to 8-bit luminance (PIL "L") for a 1-channel model']
    Image.fromarray(expected).save(tmp_path / "gray.png")
    gray = read_image_file(tmp_path / "gray.png", channels=1)
    assert np.array_equal(gray.pixels, read.pixels) and gray.notes == []
    assert read_image_file(tmp_path / "gray.png").notes == ["L converted to RGB"]
    Image.fromarray(expected.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    deep = read_image_file(tmp_path / "g16.png", channels=1)
    assert np.array_equal(deep.pixels, read.pixels)
    values = expected.astype(np.int64) * 257
    assert deep.notes == [f"16-bit grayscale (I;16), values {values.min()}..{values.max()}, "
                          "scaled to 8 bits (v / 257)"]
    with pytest.raises(ValueError, match="image files are read with 1 or 3 channels, not 2"):
        read_image_file(photo, channels=2)


def png16(path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG of ``uint16 [H, W, 3]`` (Pillow writes none: by hand)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    height, width, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_16_bit_color_png_says_how_it_was_read(tmp_path):
    """Pillow reads it as 8-bit RGB (its high bytes) without a word; it is said now."""
    rgb = np.random.default_rng(0).integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    png16(tmp_path / "c16.png", rgb)
    read = read_image_file(tmp_path / "c16.png")
    assert np.array_equal(read.pixels, (rgb >> 8).astype(np.uint8))
    assert read.notes == ["16-bit color PNG: each channel read as its high byte (v >> 8, "
                          "Pillow's reading; within 1 of v / 257)"]
    Image.fromarray((rgb >> 8).astype(np.uint8)).save(tmp_path / "c8.png")
    assert read_image_file(tmp_path / "c8.png").notes == []


def test_to_channels_goes_both_ways(photo):
    gray = read_image_file(photo).to_channels(1)
    back = gray.to_channels(3)
    assert back.pixels.shape == (32, 32, 3) and np.array_equal(back.pixels[..., 2],
                                                               gray.pixels[..., 0])
    assert back.notes == ['RGB converted to 8-bit luminance (PIL "L") for a 1-channel model',
                          "gray values repeated to three channels (RGB)"]
    same = ImageFile(np.zeros((2, 2, 3), np.uint8), "RGB", [])
    assert same.to_channels(3) is same


def test_fit_image_checks_channels_and_fits_one_channel(photo):
    gray = read_image_file(photo, channels=1)
    tensor, fitted = fit_image(gray, 16, channels=1)
    assert tensor.shape == (1, 1, 16, 16) and fitted.original == (32, 32)
    expected = np.asarray(Image.fromarray(gray.pixels[..., 0]).resize(
        (16, 16), Image.Resampling.BILINEAR))
    assert torch.equal(tensor[0, 0], torch.from_numpy(expected.copy()).float() / 255)
    with pytest.raises(ValueError) as caught:
        fit_image(read_image_file(photo), 32, channels=1)
    assert str(caught.value) == ("the image holds 3 channel(s) and the model takes 1; read it "
                                 "with read_image_file(path, channels=1), which converts it "
                                 "and says so")
    assert fit_image(read_image_file(photo), None)[0].shape == (1, 3, 32, 32)


def test_loaders_give_one_channel_with_one_note(folder, sample, tmp_path, in_file_order):
    found, notes = load_folder(folder, channels=1)
    images, _ = in_file_order(found, sample)
    expected = np.stack([np.asarray(Image.fromarray(i.permute(1, 2, 0).numpy()).convert("L"))
                         for i in images])
    assert found.images.shape == (30, 1, 32, 32)
    assert np.array_equal(found.images[:, 0].numpy(), expected)
    assert [n for n in notes if "luminance" in n] == [
        f'RGB converted to 8-bit luminance (PIL "L") for a 1-channel model (30 images, e.g. '
        f"{found.ids[0]})"]
    (tmp_path / "l.csv").write_text("".join(f"images/{i},{i.split('/')[0]}\n" for i in found.ids))
    listed, notes = load_csv(tmp_path / "l.csv", channels=1)
    assert torch.equal(listed.images, found.images)
    cifar_notes: list[str] = []
    cifar = load_dataset("cifar10", source="sample", channels=1, notes=cifar_notes)
    assert cifar.images.shape == (100, 1, 32, 32) and cifar_notes == [
        '3-channel images converted to 8-bit luminance (PIL "L") for a 1-channel model']
    assert torch.equal(cifar.images[:30], torch.from_numpy(np.stack([
        np.asarray(Image.fromarray(i.permute(1, 2, 0).numpy()).convert("L"))
        for i in sample.images]))[:, None])


# ----------------------------------------------------------------------------- misreads
@pytest.mark.parametrize("mode, stored, key", [
    ("RGB", (10, 200, 30), (10, 200, 30)),
    ("L", 119, 119),
    ("I;16", 30711, 30711),
])
def test_a_transparent_color_key_is_composited_onto_white(mode, stored, key, tmp_path):
    """A PNG tRNS chunk marks one color transparent in RGB, grayscale and 16-bit files;
    only palette files were composited, the others read as stored (an audit's case: the
    model then labelled another class than a viewer's image shows)."""
    rng = np.random.default_rng(0)
    if mode == "RGB":
        values = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
        values[(values == stored).all(2)] = 0
        values[1:3, 2:4] = stored
    else:
        top = 256 if mode == "L" else 65536
        values = rng.integers(0, top, (6, 7)).astype(np.uint8 if mode == "L" else np.uint16)
        values[values == stored] = 0
        values[1:3, 2:4] = stored
    image = Image.fromarray(values)
    image.save(tmp_path / "keyed.png", transparency=key)
    assert Image.open(tmp_path / "keyed.png").info["transparency"] == key
    read = read_image_file(tmp_path / "keyed.png")
    assert (read.pixels[1:3, 2:4] == 255).all()
    untouched = np.ones((6, 7), dtype=bool)
    untouched[1:3, 2:4] = False
    assert (read.pixels[untouched] < 255).any()
    assert "transparent color (a PNG tRNS key): 4 of 42 pixels, composited onto white" in (
        read.notes)


def test_frames_are_said_by_the_reader_for_files_of_a_set_too(tmp_path, sample):
    frames = [Image.fromarray(sample.images[i].permute(1, 2, 0).numpy()) for i in (0, 1)]
    frames[0].save(tmp_path / "two.png", save_all=True, append_images=frames[1:])
    read = read_image_file(tmp_path / "two.png")
    assert read.notes[0] == ("holds 2 frames (an animation or a multi-page file); only the "
                             "first is read")
    assert np.array_equal(read.pixels, sample.images[0].permute(1, 2, 0).numpy())


def test_pillows_refusals_and_warnings_name_the_file(tmp_path, sample, monkeypatch):
    """Pillow's ValueError (a text chunk too large to decompress) was an internal error
    in a folder; its UserWarnings (corrupt EXIF) came out as raw Python warnings."""
    from PIL import PngImagePlugin

    path = tmp_path / "texty.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a" * 5000, zip=True)
    Image.fromarray(sample.images[0].permute(1, 2, 0).numpy()).save(path, pnginfo=info)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 1000)
    with pytest.raises(DataError, match=f"cannot read image {path}: Decompressed data"):
        read_image_file(path)
    jpeg = tmp_path / "exif.jpg"
    Image.fromarray(sample.images[0].permute(1, 2, 0).numpy()).save(
        jpeg, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff")
    notes = read_image_file(jpeg).notes
    assert any(note.startswith("Pillow: Corrupt EXIF data") for note in notes), notes


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="it is not a regular file"):
        read_image_file(fifo)
