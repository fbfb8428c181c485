"""Dataset import and preparation on procedurally made files: every format, every way a file goes wrong."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import scan as scan_module
from training.dataset import DatasetError, PreparedDataset, prepare_dataset, scan_sources
from training.decode import DecodedImage, ImageRejected, decode_image
from training.prepare import fit_square

RES = 32
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def pattern(seed: int, width: int = 96, height: int = 80) -> Image.Image:
    """A smooth random picture: distinct per seed, and survives JPEG well (like a photo would)."""
    cells = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((width, height), Image.Resampling.BILINEAR)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def bars(width: int = 64, height: int = 32, bar: int = 16) -> Image.Image:
    """Green, with a red bar down the left side and a blue one down the right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = GREEN
    pixels[:, :bar] = RED
    pixels[:, width - bar :] = BLUE
    return Image.fromarray(pixels)


def write_raw_folder(root: Path) -> None:
    """Every kind of file an artist's folder may hold; see EXPECTED_* for what the import must say."""
    root.mkdir()
    (root / "sub").mkdir()
    pattern(1).save(root / "good_rgb.png")
    shutil.copyfile(root / "good_rgb.png", root / "zz_copy.png")
    pattern(1).save(root / "good_rgb_q90.jpg", quality=90)
    pattern(2).save(root / "good.jpg", quality=95)
    pattern(3).save(root / "good.webp")
    pattern(4).save(root / "sub" / "good.bmp")
    pattern(5).save(root / "sub" / "good.tiff")
    pattern(6).quantize(64).save(root / "anim.gif", save_all=True, append_images=[pattern(7).quantize(64)])
    rgba = pattern(8).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(96) < 48, 0, 255).astype(np.uint8)[None].repeat(80, 0)))
    rgba.save(root / "rgba.png")
    ramp = (np.linspace(0, 65535, 96)[None].repeat(80, 0)).astype(np.uint16)
    Image.fromarray(ramp).save(root / "gray16.png")
    pattern(9).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    stored = np.zeros((32, 64, 3), np.uint8)  # landscape as stored: red left half, blue right half
    stored[:, :32], stored[:, 32:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the red half becomes the top half
    Image.fromarray(stored).save(root / "rotated.jpg", quality=95, exif=exif.tobytes())
    palette = pattern(10).quantize(15)
    indices = np.asarray(palette).copy()
    indices[:, :24] = 15  # the transparent palette entry
    transparent = Image.fromarray(indices, "P")
    transparent.putpalette(palette.getpalette()[:45] + [0, 0, 0])
    transparent.save(root / "palette.png", transparency=15)
    pattern(11, 12, 10).save(root / "tiny.png")
    (root / "empty.png").write_bytes(b"")
    whole = encoded(pattern(12), "PNG")
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.jpg").write_text("shopping list: cat food, brushes\n")
    (root / "readme.txt").write_text("these are my cats\n")
    (root / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "bomb.png").write_bytes(png_bomb(20000, 20000))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


EXPECTED_USABLE = [
    "anim.gif", "cmyk.jpg", "good.jpg", "good.webp", "good_rgb.png", "gray16.png",
    "palette.png", "rgba.png", "rotated.jpg", "tiny.png", "good.bmp", "good.tiff",
]  # fmt: skip
EXPECTED_REJECTED = {
    "bomb.png": "image too large: 20000×20000 pixels exceeds the 89-megapixel limit",
    "drawing.svg": 'unsupported file type ".svg" (vector image: export it as PNG first)',
    "empty.png": "empty file (0 bytes)",
    "notes.jpg": "not an image (looks like text)",
    "readme.txt": 'unsupported file type ".txt"',
    "truncated.png": "truncated PNG",
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("import") / "raw"
    write_raw_folder(root)
    return root


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def by_name(dataset: PreparedDataset) -> dict[str, np.ndarray]:
    """Prepared pixels [H, W, C] keyed by source file name (or archive member)."""
    return {
        Path(entry["member"] or entry["source"]).name: dataset[i][0].permute(1, 2, 0).numpy()
        for i, entry in enumerate(dataset.images)
    }


def reference(image: Image.Image, mode: str = "crop") -> np.ndarray:
    return fit_square(DecodedImage(image.convert("RGB"), image.size), RES, mode)[0].astype(int)


def test_scan_report_names_every_file_and_reason(raw: Path) -> None:
    report = scan_sources([raw], RES)

    assert report.counts() == {
        "found": 20, "scanned": 20, "usable": 12, "rejected": 6, "duplicates": 1,
        "near_duplicates": 1, "small": 1, "already_prepared": 0,
    }  # fmt: skip
    assert [Path(image.name).name for image in report.images] == EXPECTED_USABLE
    assert {Path(r.name).name: r.reason for r in report.rejected} == EXPECTED_REJECTED
    assert [(Path(g.original).name, [Path(c).name for c in g.copies]) for g in report.duplicates] == [
        ("good_rgb.png", ["zz_copy.png"])
    ]
    assert [(Path(g.original).name, [Path(c).name for c in g.copies]) for g in report.near_duplicates] == [
        ("good_rgb.png", ["good_rgb_q90.jpg"])
    ]
    assert [Path(name).name for name in report.small] == ["tiny.png"]
    sizes = {Path(image.name).name: (image.width, image.height) for image in report.images}
    assert sizes["rotated.jpg"] == (32, 64)  # upright, after the EXIF rotation
    assert report.size_histogram() == {
        "<64": 2, "64-127": 10, "128-255": 0, "256-511": 0, "512-1023": 0, "≥1024": 0,
    }  # fmt: skip
    decoded = json.loads(json.dumps(report.to_dict()))
    assert decoded["counts"]["usable"] == 12 and len(decoded["rejected"]) == 6
    summary = report.summary()
    assert summary.startswith(
        "Scanned 20 files: 12 usable, 6 rejected, 1 exact duplicate dropped, "
        "1 near-duplicate dropped, 1 small."
    )
    assert f"{raw / 'empty.png'}: empty file (0 bytes)" in summary
    assert f"{raw / 'tiny.png'} (12×10)" in summary


def test_prepare_normalises_every_format_without_touching_the_sources(raw: Path, tmp_path: Path) -> None:
    before = file_hashes(raw)
    report = prepare_dataset([raw], tmp_path / "set", RES)
    assert file_hashes(raw) == before
    assert report.dataset_size == 12 and not report.cancelled

    dataset = PreparedDataset(tmp_path / "set")
    pixels = by_name(dataset)
    assert sorted(pixels) == sorted(EXPECTED_USABLE)
    for name in ["good_rgb.png", "good.jpg", "good.webp", "good.bmp", "good.tiff", "anim.gif"]:
        source = next(raw.rglob(name))
        assert np.array_equal(pixels[name], reference(Image.open(source))), name
    assert np.abs(pixels["cmyk.jpg"] - reference(pattern(9))).mean() < 6  # CMYK back to the colours it had

    rgba = pixels["rgba.png"]  # crop keeps source columns 8-88; alpha is 0 left of column 48 (output 16)
    assert (rgba[:, :12] == 255).all()
    assert np.array_equal(rgba[:, 20:], reference(pattern(8))[:, 20:])

    palette = pixels["palette.png"]  # transparent index over source columns 0-24: output columns 0-6.4
    assert (palette[:, :3] == 255).all() and not (palette[:, 12:] == 255).all()

    gray = pixels["gray16.png"].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    row = gray[16, :, 0]
    assert 30 < row[2] < row[16] < row[29] < 225  # scaled from 16 bits, not clipped to white
    assert np.all(np.diff(row[2:30]) >= 0)

    rotated = pixels["rotated.jpg"].astype(int)
    assert (rotated[:12, :, 0] > 200).all() and (rotated[:12, :, 2] < 60).all()  # red on top after rotation
    assert (rotated[20:, :, 2] > 200).all() and (rotated[20:, :, 0] < 60).all()

    gif = pixels["anim.gif"]
    first = reference(Image.open(raw / "anim.gif"))
    assert np.array_equal(gif, first)  # the first frame, not the second
    assert np.abs(first - reference(pattern(7))).mean() > 20

    entry = next(e for e in dataset.images if e["name"].endswith("good_rgb.png"))
    assert entry["size"] == [96, 80] and entry["box"] == [8, 0, 88, 80]
    assert entry["sha256"] == hashlib.sha256((raw / "good_rgb.png").read_bytes()).hexdigest()


def test_alpha_can_be_kept(raw: Path, tmp_path: Path) -> None:
    prepare_dataset([raw / "rgba.png", raw / "good.jpg"], tmp_path / "set", RES, alpha="keep")
    dataset = PreparedDataset(tmp_path / "set")
    assert dataset.num_channels == 4
    rgba = by_name(dataset)["rgba.png"]
    assert (rgba[:, :12, 3] == 0).all() and (rgba[:, 20:, 3] == 255).all()
    assert (by_name(dataset)["good.jpg"][..., 3] == 255).all()


@pytest.mark.parametrize(
    ("data", "max_pixels", "reason"),
    [
        (encoded(pattern(1), "JPEG")[:-600], None, "truncated JPEG"),
        (encoded(pattern(1), "GIF")[:300], None, "truncated GIF"),
        (
            b"\0\0\0\x18ftypheic" + bytes(64),
            None,
            "HEIC/AVIF image (not supported; convert it to JPEG or PNG)",
        ),
        (b"%PDF-1.7\n" + bytes(64), None, "not an image (looks like a PDF document)"),
        (bytes(range(256)) * 4, None, "not an image (unrecognised content)"),
        (encoded(pattern(1), "PNG"), 1000, "image too large: 96×80 pixels exceeds the 1,000-pixel limit"),
    ],
    ids=["truncated-jpeg", "truncated-gif", "heic", "pdf", "binary", "too-large"],
)
def test_decode_rejects_with_a_specific_reason(data: bytes, max_pixels: int | None, reason: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, max_pixels=max_pixels)
    assert str(caught.value) == reason


def test_decode_scales_16_bit_samples() -> None:
    samples = np.array([[0, 257, 32768, 65535]], np.uint16)
    decoded = decode_image(encoded(Image.fromarray(samples), "PNG"))
    assert np.asarray(decoded.image)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_zip_archives_are_read_in_place(raw: Path, tmp_path: Path) -> None:
    archive = tmp_path / "drop" / "cats.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(raw / "good.jpg", "set/a.jpg")
        zf.write(raw / "good_rgb.png", "set/b.png")
        zf.write(raw / "truncated.png", "set/broken.png")
        zf.writestr("set/readme.txt", "hi")
        zf.writestr("__MACOSX/set/._a.jpg", b"\0\5\26\7")
        zf.writestr("set/.hidden.png", b"")
    (tmp_path / "drop" / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    before = sorted(tmp_path.rglob("*"))

    report = prepare_dataset(
        [archive, raw / "rotated.jpg", archive, tmp_path / "drop"], tmp_path / "set", RES
    )
    assert sorted(p for p in tmp_path.rglob("*") if "set" not in p.relative_to(tmp_path).parts) == before
    assert [image.name for image in report.images] == [
        f"{archive}/set/a.jpg",
        f"{archive}/set/b.png",
        str(raw / "rotated.jpg"),
    ]
    assert {r.name: r.reason for r in report.rejected} == {
        str(tmp_path / "drop" / "bad.zip"): "damaged zip archive (File is not a zip file)",
        f"{archive}/set/broken.png": "truncated PNG",
        f"{archive}/set/readme.txt": 'unsupported file type ".txt"',
    }
    dataset = PreparedDataset(tmp_path / "set")
    assert dataset.images[0]["source"] == str(archive) and dataset.images[0]["member"] == "set/a.jpg"
    assert np.array_equal(by_name(dataset)["b.png"], reference(pattern(1)))


# Scans in a child process under a memory cap and a deadline: should a pipe block or /dev/zero stream again,
# the test fails instead of hanging the suite or exhausting the machine's memory.
SCAN_CAPPED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from training.scan import scan_sources
report = scan_sources(sys.argv[1:])
print(json.dumps({"usable": [i.name for i in report.images], "rejected": {r.name: r.reason for r in report.rejected}}))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs POSIX FIFOs")
def test_pipes_sockets_devices_and_lying_zip_entries_are_refused_unread(raw: Path, tmp_path: Path) -> None:
    drop = tmp_path / "d"
    drop.mkdir()
    shutil.copyfile(raw / "good.jpg", drop / "good.jpg")
    os.mkfifo(drop / "pipe.png")  # no writer: opening it for reading would wait forever
    os.mkfifo(drop / "pipe.zip")
    os.mkfifo(tmp_path / "dropped.png")  # dropped on its own, not inside a folder
    (drop / "zero.png").symlink_to("/dev/zero")  # endless bytes behind a size of 0
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(drop / "sock.png"))
    archive = drop / "set.zip"
    good = (raw / "good.jpg").read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", (raw / "good_rgb.png").read_bytes())
        for name, kind in [("fifo.png", stat.S_IFIFO), ("link.png", stat.S_IFLNK)]:
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (kind | 0o644) << 16
            zf.writestr(entry, b"/etc/passwd")
        zf.writestr("liar.jpg", good)
    data = bytearray(archive.read_bytes())
    liar = data.rfind(b"PK\x01\x02")  # its central-directory entry: claim 10 bytes uncompressed
    data[liar + 24 : liar + 28] = struct.pack("<I", 10)
    archive.write_bytes(bytes(data))

    try:
        done = subprocess.run(
            [sys.executable, "-c", SCAN_CAPPED, str(drop), str(tmp_path / "dropped.png")],
            capture_output=True, text=True, timeout=60, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["usable"] == [str(drop / "good.jpg"), f"{archive}/ok.png"], result
    rejected = result["rejected"]
    assert rejected == {
        str(drop / "pipe.png"): "not a regular file (a named pipe)",
        str(drop / "pipe.zip"): "not a regular file (a named pipe)",
        str(tmp_path / "dropped.png"): "not a regular file (a named pipe)",
        str(drop / "sock.png"): "not a regular file (a socket)",
        str(drop / "zero.png"): "not a regular file (a character device)",
        f"{archive}/fifo.png": "not a regular file in the zip archive (a named pipe)",
        f"{archive}/link.png": "not a regular file in the zip archive (a symbolic link)",
        f"{archive}/liar.jpg": rejected[f"{archive}/liar.jpg"],
    }
    assert rejected[f"{archive}/liar.jpg"].startswith("unreadable in the zip archive (Bad CRC-32")


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_fit_modes_put_the_bars_where_they_belong(tmp_path: Path, mode: str) -> None:
    bars().save(tmp_path / "bars.png")
    prepare_dataset([tmp_path / "bars.png"], tmp_path / "set", RES, mode=mode)
    dataset = PreparedDataset(tmp_path / "set")
    out = dataset[0][0].permute(1, 2, 0).numpy()
    box = dataset.images[0]["box"]
    if mode == "crop":  # the centre square: columns 16-48, all green
        assert box == [16, 0, 48, 32]
        assert (out[:, 4:28] == GREEN).all()
    elif mode == "stretch":  # squeezed: each bar a quarter of the width
        assert box == [0, 0, 64, 32]
        assert (out[:, :3] == RED).all() and (out[:, 12:20] == GREEN).all() and (out[:, -3:] == BLUE).all()
    else:  # letterboxed: content in rows 8-24, rows above and below repeat its edge
        assert box == [0, -16, 64, 48]
        assert (out[8:24, :3] == RED).all() and (out[8:24, 12:20] == GREEN).all()
        assert (out[:8] == out[8]).all() and (out[24:] == out[23]).all()


def test_pad_with_a_solid_colour(tmp_path: Path) -> None:
    bars().save(tmp_path / "bars.png")
    prepare_dataset([tmp_path / "bars.png"], tmp_path / "set", RES, mode="pad", pad_fill=(0, 0, 0))
    out = PreparedDataset(tmp_path / "set")[0][0].permute(1, 2, 0).numpy()
    assert (out[:8] == 0).all() and (out[24:] == 0).all() and (out[9:23, :3] == RED).all()


def test_large_jpeg_decoded_reduced_keeps_geometry(tmp_path: Path) -> None:
    bars(1024, 512, 256).save(tmp_path / "big.jpg", quality=95)
    report = prepare_dataset([tmp_path / "big.jpg"], tmp_path / "set", RES, mode="stretch")
    assert (report.images[0].width, report.images[0].height) == (1024, 512)
    out = PreparedDataset(tmp_path / "set")[0][0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(out[:, :6] - RED).max() < 12 and np.abs(out[:, 10:22] - GREEN).max() < 12
    assert np.abs(out[:, -6:] - BLUE).max() < 12


def test_reimport_processes_only_new_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    for seed in range(3):
        pattern(seed).save(source / f"old{seed}.png")
    prepare_dataset([source], tmp_path / "set", RES, xflip=True)
    old = PreparedDataset(tmp_path / "set")
    old_pixels = [old[i][0].clone() for i in range(3)]
    for seed in (3, 4):
        pattern(seed).save(source / f"new{seed}.png")
    (tmp_path / "set" / "images-00042.npy.partial").write_bytes(b"left by a crash")

    decoded: list[int] = []
    real_decode = scan_module.decode_image
    monkeypatch.setattr(
        scan_module, "decode_image", lambda data, **kw: decoded.append(1) or real_decode(data, **kw)
    )
    report = prepare_dataset([source], tmp_path / "set", RES, xflip=True)

    assert len(decoded) == 2 and report.already_prepared == 3
    assert [Path(image.name).name for image in report.images] == ["new3.png", "new4.png"]
    dataset = PreparedDataset(tmp_path / "set")
    assert len(dataset) == 10 and report.dataset_size == 5
    assert all(torch.equal(dataset[i][0], old_pixels[i]) for i in range(3))
    files = sorted(p.name for p in (tmp_path / "set").iterdir())
    assert len(files) == 3 and files[1] == "images-00002.npy"  # last shard topped up, leftovers removed
    with pytest.raises(DatasetError, match=r"resolution 32 \(asked 64\)"):
        prepare_dataset([source], tmp_path / "set", 64)


def test_cancel_leaves_the_previous_dataset_intact(tmp_path: Path) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    pattern(0).save(source / "a.png")
    prepare_dataset([source], tmp_path / "set", RES)
    before = file_hashes(tmp_path / "set")
    for seed in (1, 2, 3):
        pattern(seed).save(source / f"b{seed}.png")

    seen: list[int] = []
    report = prepare_dataset(
        [source],
        tmp_path / "set",
        RES,
        progress=lambda done, total, msg: seen.append(done),
        cancel=lambda: len(seen) >= 2,
    )
    assert report.cancelled and report.scanned == 2 and report.found == 4
    assert file_hashes(tmp_path / "set") == before
    assert len(PreparedDataset(tmp_path / "set")) == 1

    prepare_dataset([source], tmp_path / "fresh", RES, cancel=lambda: True)
    assert not (tmp_path / "fresh").exists()


def test_refuses_a_folder_that_is_not_a_dataset(raw: Path, tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(DatasetError, match="already holds other files"):
        prepare_dataset([raw / "good.jpg"], tmp_path, RES)
    assert (tmp_path / "holiday.jpg").read_bytes() == b"mine"


def test_duplicates_can_be_kept(raw: Path, tmp_path: Path) -> None:
    sources = [raw / "good_rgb.png", raw / "zz_copy.png", raw / "good_rgb_q90.jpg"]
    report = prepare_dataset(sources, tmp_path / "set", RES, drop_duplicates=False)
    assert len(report.images) == 3 and report.counts()["duplicates"] == 1
    assert report.counts()["near_duplicates"] == 1


def test_loader_shapes_flips_and_workers(raw: Path, tmp_path: Path) -> None:
    prepare_dataset(
        [raw / "good.jpg", raw / "bomb.png", raw / "rotated.jpg"], tmp_path / "set", RES, xflip=True
    )
    dataset = PreparedDataset(tmp_path / "set")
    assert (dataset.resolution, dataset.num_channels, dataset.num_images, len(dataset)) == (RES, 3, 2, 4)
    image, label = dataset[0]
    assert image.shape == (3, RES, RES) and image.dtype == torch.uint8 and label == -1
    assert torch.equal(dataset[2][0], image.flip(-1)) and torch.equal(dataset[-1][0], dataset[1][0].flip(-1))
    with pytest.raises(IndexError):
        dataset[4]
    assert not PreparedDataset(tmp_path / "set", xflip=False).xflip
    assert torch.equal(pickle.loads(pickle.dumps(dataset))[3][0], dataset[3][0])
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, RES, RES) and labels.tolist() == [-1] * 4


def test_memory_stays_flat_while_preparing_many_images(tmp_path: Path) -> None:
    count, side, resolution = 300, 128, 64
    source = tmp_path / "many"
    source.mkdir()
    for seed in range(count):
        pattern(1000 + seed, side, side).save(source / f"{seed:04d}.bmp")  # quick to write and read

    tracemalloc.start()
    start = time.perf_counter()
    report = prepare_dataset([source], tmp_path / "set", resolution)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert report.dataset_size == count
    all_decoded = count * side * side * 3
    assert peak < all_decoded / 6, f"peak {peak / 2**20:.1f} MiB"
    print(
        f"prepared {count} images at {resolution}px in {seconds:.2f}s (traced), peak {peak / 2**20:.2f} MiB"
    )
    assert np.load(tmp_path / "set" / "images-00000.npy", mmap_mode="r").shape == (
        count,
        resolution,
        resolution,
        3,
    )
