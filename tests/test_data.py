"""Dataset classes on tiny fixtures in the real corpora's layouts, and robust decoding."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from balstyle.data import (JitteredCrops, UnreadableImageError, anime_faces, bundled_photos, bundled_textures, coco_images,
                           deception_test_split, dtd, imagenet_images, load_image, painter_by_numbers,
                           painter_by_numbers_info, to_tensor_transform)


def write_image(path, colour=(10, 20, 30), size=(12, 10), mode="RGB", fmt=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, fmt, **kw)
    return path


# ---- decoding ------------------------------------------------------------------------------------

def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif(); exif[0x0112] = 8              # rotate 90° counter-clockwise to display
    img = Image.new("RGB", (4, 2)); img.putpixel((0, 0), (255, 0, 0))
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "r.jpg")
    assert out.size == (2, 4) and out.mode == "RGB"


@pytest.mark.parametrize("mode,colour,expected", [
    ("L", 100, (100, 100, 100)),
    ("RGBA", (0, 0, 255, 0), (255, 255, 255)),      # fully transparent → white background
    ("RGBA", (0, 0, 255, 255), (0, 0, 255)),
    ("LA", (0, 255), (0, 0, 0)),
    ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
    ("I;16", 65535, (255, 255, 255)),
    ("I;16", 257 * 40, (40, 40, 40)),
    ("1", 1, (255, 255, 255)),
])
def test_modes_decode_to_rgb(tmp_path, mode, colour, expected):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode.startswith("I") else "PNG")
    path = write_image(tmp_path / f"x.{fmt.lower()}", colour, mode=mode, fmt=fmt)
    out = load_image(path)
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out)[0, 0].astype(int) - np.array(expected)).max() <= 2


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (3, 3), 1); img.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762); img.info["transparency"] = 0
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "p.png", transparency=0)
    out = np.asarray(load_image(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [200, 0, 0]


def test_sixteen_bit_rgb_png(tmp_path):
    "A 16-bit-per-channel RGB PNG written chunk by chunk (PIL and imageio cannot write one)."
    import struct, zlib
    a = np.full((4, 4, 3), 65535, np.uint16); a[..., 1] = 0
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in a)
    def chunk(kind, data): return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    (tmp_path / "deep.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
                                        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert np.asarray(load_image(tmp_path / "deep.png"))[0, 0].tolist() == [255, 0, 255]


def test_corrupt_files_raise_or_warn_with_their_name(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)
    good = write_image(tmp_path / "fine.jpg")
    data = Image.open(good); data.close()
    truncated = tmp_path / "truncated.jpg"; truncated.write_bytes(good.read_bytes()[:60])
    for bad in ("broken.jpg", "truncated.jpg"):
        with pytest.raises(UnreadableImageError, match=bad): load_image(tmp_path / bad)
        with pytest.warns(UserWarning, match=bad): assert load_image(tmp_path / bad, on_error="warn") is None


# ---- corpora in their layouts -------------------------------------------------------------------

def test_coco_layout(tmp_path):
    for i in range(3): write_image(tmp_path / "coco" / "train2014" / f"COCO_train2014_{i:012d}.jpg")
    (tmp_path / "coco" / "train2014" / "notes.txt").write_text("not an image")
    ds = coco_images(tmp_path / "coco", transform=to_tensor_transform(8))
    assert len(ds) == 3 and ds[0].shape == (3, 8, 8)
    assert len(coco_images(tmp_path / "coco" / "train2014")) == 3
    with pytest.raises(FileNotFoundError, match="train2014"): coco_images(tmp_path)


def test_imagenet_class_folders(tmp_path):
    for wnid, n in (("n01440764", 2), ("n01443537", 3)):
        for i in range(n): write_image(tmp_path / "imagenet" / "val" / wnid / f"{i}.JPEG")
    ds = imagenet_images(tmp_path / "imagenet", "val")
    assert ds.classes == ["n01440764", "n01443537"] and len(ds) == 5
    assert sorted(ds.labels) == [0, 0, 1, 1, 1] and ds[4][1] == 1


def make_pbn(root, with_all_data_info=True):
    "A tiny Painter by Numbers: artists a (train and test), b (test only, 3 works), c (test only, 1 work)."
    rows = [("1.jpg", "a", True), ("2.jpg", "a", True), ("3.jpg", "a", False), ("4.jpg", "b", False),
            ("5.jpg", "b", False), ("6.jpg", "b", False), ("7.jpg", "c", False), ("8.jpg", "a", True)]
    for f, _, train in rows[:-1]: write_image(root / ("train" if train else "test") / f)   # 8.jpg is listed but missing
    pd.DataFrame({"filename": [f for f, _, t in rows if t], "artist": [a for _, a, t in rows if t],
                  "title": "t", "style": "s", "genre": "g", "date": 1900}).to_csv(root / "train_info.csv", index=False)
    if with_all_data_info:
        pd.DataFrame({"artist": [a for _, a, _ in rows], "new_filename": [f for f, _, _ in rows],
                      "in_train": [t for *_, t in rows], "title": "t"}).to_csv(root / "all_data_info.csv", index=False)


def test_painter_by_numbers_layout_and_deception_split(tmp_path):
    root = tmp_path / "pbn"; make_pbn(root)
    train = painter_by_numbers(root, "train")
    assert len(train) == 2 and train.classes == ["a"]                     # 8.jpg listed but absent: left out
    test = painter_by_numbers(root, "test")
    assert test.classes == ["a", "b", "c"] and len(test) == 5
    split = deception_test_split(painter_by_numbers_info(root), min_paintings=2)
    assert sorted(split["filename"]) == ["4.jpg", "5.jpg", "6.jpg"]      # b: unseen in training, ≥ 2 test works
    assert deception_test_split(painter_by_numbers_info(root), min_paintings=30).empty
    x, y = test[1]
    assert x.shape == (3, 10, 12) and test.classes[y] == "b"


def test_painter_by_numbers_with_train_info_only(tmp_path):
    root = tmp_path / "pbn"; make_pbn(root, with_all_data_info=False)
    assert len(painter_by_numbers(root, "train")) == 2
    with pytest.raises(ValueError, match="all_data_info"): deception_test_split(painter_by_numbers_info(root))
    with pytest.raises(FileNotFoundError, match="train_info.csv"): painter_by_numbers_info(tmp_path)


def test_dtd_layout(tmp_path):
    root = tmp_path / "dtd"
    for cat in ("banded", "zigzagged"):
        for i in range(2): write_image(root / "images" / cat / f"{cat}_{i:04d}.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "train1.txt").write_text("banded/banded_0000.jpg\nzigzagged/zigzagged_0001.jpg\n")
    ds = dtd(root, "train", 1)
    assert len(ds) == 2 and ds.classes == ["banded", "zigzagged"] and ds.labels == [0, 1]
    assert len(dtd(root, None)) == 4
    with pytest.raises(FileNotFoundError, match="test3.txt"): dtd(root, "test", 3)


def test_anime_faces_min_works(tmp_path):
    for artist, n in (("artist_a", 3), ("artist_b", 1)):
        for i in range(n): write_image(tmp_path / "faces" / artist / f"{i}.png")
    assert anime_faces(tmp_path / "faces").classes == ["artist_a", "artist_b"]
    ds = anime_faces(tmp_path / "faces", min_works=2)
    assert ds.classes == ["artist_a"] and len(ds) == 3


def test_a_bad_file_in_a_corpus_is_skipped_not_fatal(tmp_path):
    for i in range(3): write_image(tmp_path / "train2014" / f"{i}.jpg", colour=(i * 100, 0, 0))
    (tmp_path / "train2014" / "1.jpg").write_bytes(b"corrupt")
    ds = coco_images(tmp_path)
    with pytest.warns(UserWarning, match="1.jpg"): x = ds[1]
    assert x[0].mean().item() == pytest.approx(200 / 255, abs=0.02)   # served the next readable file
    assert [ds[i] is not None for i in range(3)] == [True] * 3


# ---- bundled images ------------------------------------------------------------------------------

def test_bundled_images_and_jittered_crops_are_deterministic():
    photos, textures = bundled_photos(), bundled_textures()
    assert len(photos) == 8 and len(textures) == 3
    assert all(im.mode == "RGB" and min(im.size) >= 256 for im in {**photos, **textures}.values())
    a = JitteredCrops(list(photos.values()), n=5, size=32, seed=1)
    b = JitteredCrops(list(photos.values()), n=5, size=32, seed=1)
    assert all(torch.equal(a[i], b[i]) for i in (4, 0, 2))
    assert not torch.equal(a[0], JitteredCrops(list(photos.values()), n=5, size=32, seed=2)[0])
    with pytest.raises(IndexError): a[5]
