"""Hostile files received from others (issue 15, items 1-4, 9, 15, 16, 18): each refused in
one ``error:`` line before anything it claims is allocated, or read as it should be.

Every command here runs in a child whose address space is capped at its size after imports
plus 1 GiB (``tests.support.limited``): a regression that allocates what a bomb claims fails
the test instead of swapping the machine. The files come from the hostile corpus
(``tests.support.hostile_corpus``), built once for the module.
"""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from precompute import store as st
from precompute.store import open_store
from tests.support import hostile_corpus as corpus
from tests.support.cli import one_error_line
from tests.support.http import running
from tests.support.limited import samaug_many
from tests.support.store_toys import DATASET, MASKER
from tests.support.store_toys import write as write_toy_image


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """The corpus, by case name; plus an images folder and a labels folder of one image."""
    folder = tmp_path_factory.mktemp("hostile")
    cases = {case["name"]: Path(case["path"]) for case in corpus.build(folder)}
    for name in ("images", "labels"):
        (folder / name).mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(folder / "images" / "x.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(folder / "labels" / "x.png")
    cases["images"], cases["labels"] = folder / "images", folder / "labels"
    return cases


def lines(*argvs):
    """The one error line of each command (run together, under the memory cap)."""
    return [one_error_line(result) for result in samaug_many(*argvs)]


def test_bundle_weights_are_bounded_by_the_model_the_config_describes(hostile, tmp_path):
    """Item 1: a weights member inflating to 1.5 GiB, or whose header claims 1.5 GiB of other
    tensors, is refused from its header; nothing is inflated."""
    bomb, claim = (
        hostile["bundle: weights inflating to 1.5 GiB"],
        hostile["bundle: header claiming 1.5 GiB"],
    )
    predict = ("predict", "--images", hostile["images"], "--device", "cpu", "--out")
    found = lines((*predict, tmp_path / "a", bomb), (*predict, tmp_path / "b", claim))
    assert found[0] == (
        f"error: {bomb}: model.safetensors holds 1,610,612,736 bytes, but its header and the 66 "
        "tensors of the model its config describes take 36,404; export the model again with "
        "`samaug export`"
    )
    assert f"{claim}: model.safetensors does not hold the weights of the model" in found[1]
    assert "and has w)" in found[1]
    other = [
        hostile[f"bundle: weights_{name}"] for name in ("of_another_shape", "of_another_dtype")
    ]
    shape, dtype = lines(*[(*predict, tmp_path / p.stem, p) for p in other])
    assert (
        "ups.1.up.weight is F32 [129], but the model its config describes has F32 [8, 4, 2, 2]"
        in shape
    )
    assert "is F16 [8, 4, 3, 3], but the model its config describes has F32 [8, 4, 3, 3]" in dtype


def test_model_options_and_patch_sizes_are_bounded(hostile, tmp_path):
    """Item 2: depth, width and patch size are bounded on the command line and in bundles,
    before anything is built (the parameter count on the meta device)."""
    store = hostile["store: sound folder"]
    # Its test split: the toy store's train split holds an unlabelled image (b_2), which
    # training refuses before a model is built.
    train = ("train", "--store", store, "--train-split", "test", "--task", "glands")
    train = (*train, "--protocol", "patches", "--out")
    found = lines(
        (*train, tmp_path / "r1", "--model-option", "depth=99"),
        (
            *train,
            tmp_path / "r2",
            "--model",
            "swin_unet",
            "--pretrained",
            "none",
            "--model-option",
            "patch_size=20000",
        ),
        (*train, tmp_path / "r3", "--patch-size", "100000"),
        (
            *train,
            tmp_path / "r4",
            "--model-option",
            "base_channels=1024",
            "--model-option",
            "depth=8",
        ),
        (
            "predict",
            hostile["bundle: depth_99"],
            "--images",
            hostile["images"],
            "--out",
            tmp_path / "p",
        ),
    )
    assert found[0] == "error: --model-option depth must be at most 8, not 99"
    assert found[1] == "error: --model-option patch_size must be at most 32, not 20000"
    assert found[2] == (
        "error: --patch-size must be at most 2048, not 100000 (set SAMAUG_MAX_PATCH_SIZE to "
        "train on larger patches)"
    )
    assert found[3].startswith("error: model unet with options {'base_channels': 1024, 'depth': 8}")
    assert "parameters, more than the limit of 500,000,000 (set SAMAUG_MAX_PARAMETERS" in found[3]
    assert found[4] == (
        f"error: {hostile['bundle: depth_99']}: its config is not valid here (--model-option "
        "depth must be at most 8, not 99)"
    )
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3", "r4", "p"))


def test_npz_probability_maps_are_checked_from_their_header(hostile, tmp_path):
    """Item 3 (and 18: an npz of shape (0, 0)): dtype, item size and shape are checked
    before the array is inflated."""
    found = []
    for case in ("npz: |V1500 (40, 50000)", "npz: <f4 (0, 0)"):
        folder = tmp_path / case.split()[1].strip("|<")
        folder.mkdir()
        shutil.copy(hostile[case], folder / "x.npz")
        found.append(("score", folder, "--labels", hostile["labels"], "--task", "binary"))
    void, empty = lines(*found)
    assert void == (
        f"error: {tmp_path / 'V1500' / 'x.npz'}: |V1500 values cannot be a probability map; "
        "use floats in [0, 1] or 8/16-bit integers"
    )
    assert "probability has shape (0, 0); expected H x W, both above 0" in empty


def test_zip_stores_whose_members_share_bytes_are_refused(hostile, tmp_path):
    """Item 4: entries pointing into one member's bytes verify clean and unpack to copies of
    it, unless refused on opening; nothing is written."""
    packed = hostile["store: zip members sharing bytes"]
    verify, unpack = lines(("store", "verify", packed), ("store", "unpack", packed, tmp_path / "u"))
    assert verify == unpack
    assert verify == (
        f"error: {packed}: member images/img_000/image/c/0/0/0 overlaps the next member or the "
        "central directory; a zip whose members share bytes is not one `samaug store pack` wrote "
        "(the store is damaged or not a samaug store)"
    )
    assert list(tmp_path.iterdir()) == []


def test_verify_checks_the_consolidated_metadata_readers_rely_on(hostile, tmp_path):
    """Item 9: a malformed consolidated copy is a problem for verify (as it is for every
    reader), repair writes it again; a packed copy whose consolidated metadata lacks an image
    is a problem too (and its advice is not a repair the zip cannot have)."""
    stores = []
    for value in ("'x'", "[]", "{'metadata': []}"):
        stores.append(tmp_path / f"{len(stores)}.zarr")
        shutil.copytree(hostile[f"store: consolidated_metadata {value}"], stores[-1])
    lacking = hostile["store: packed copy lacking an image"]
    results = samaug_many(
        *[("store", "verify", s) for s in stores],
        *[("store", "repair", s) for s in stores],
        *[("store", "info", s) for s in stores],
        ("store", "verify", lacking),
    )
    for store, verified in zip(stores, results[:3], strict=True):
        assert verified.returncode == 1
        assert verified.stdout.splitlines()[0].startswith(
            "consolidated metadata: the root zarr.json's copy is not one readers can use (found "
        )
        assert (
            f"`samaug store repair {store}` writes the consolidated metadata again"
            in verified.stdout
        )
    for repaired, info in zip(results[3:6], results[6:9], strict=True):
        assert repaired.returncode == 0 and "consolidated metadata written again" in repaired.stdout
        assert info.returncode == 0 and "consolidated metadata" in info.stdout
    assert all(open_store(s).consolidated for s in stores)
    lines_ = results[9].stdout.splitlines()
    assert results[9].returncode == 1
    assert lines_[0] == (
        "consolidated metadata: images/b_2 is not in the consolidated metadata (a packed store "
        "is read-only: pack it again from its source, or `samaug store unpack` it and run "
        "`samaug store repair` on the folder, which writes it again)"
    )
    assert "samaug store repair " + str(lacking) not in results[9].stdout


def test_a_poisoned_cache_entry_is_refetched(tmp_path):
    """Item 15: another image's shard copied over this image's cached shard passes its
    crc32c; the reader compares it with the recorded sha256, discards it and fetches the
    store's own."""
    path = tmp_path / "two.zarr"
    st.prepare_store(path, st.store_root_attrs(DATASET, MASKER))
    truth = {
        k: write_toy_image(path, k, "train", shape=(64, 48), seed=i)[0] for i, k in enumerate("ab")
    }
    st.set_index(path, {"a": "train", "b": "train"})
    st.consolidate(path)
    cache = tmp_path / "cache"
    with running(tmp_path) as server:
        url = f"{server.url}/two.zarr"
        first = open_store(url, cache=cache)
        for image_id in "ab":
            np.testing.assert_array_equal(first.read(image_id, "image"), truth[image_id])
        cached = {k: next(cache.rglob(f"images/{k}/image/c/0/0/0")) for k in "ab"}
        cached["b"].write_bytes(cached["a"].read_bytes())  # a's pixels, as b's
        server.reset()
        again = open_store(url, cache=cache)
        np.testing.assert_array_equal(again.read("b", "image"), truth["b"])
        fetched = [r.path for r in server.reset()]
    assert fetched == ["/two.zarr/zarr.json", "/two.zarr/images/b/image/c/0/0/0"]
    assert cached["b"].read_bytes() != cached["a"].read_bytes()  # the store's own, kept again


def test_a_bundle_never_chooses_the_store_it_is_evaluated_on(hostile, tmp_path):
    """Item 16: eval of a bundle without --store is refused (its config may name any URL);
    a results folder name taken by a file is refused before anything is read (item 18)."""
    bundle = tmp_path / "b" / "model2.zip"
    bundle.parent.mkdir()
    shutil.copy(hostile["bundle: sound"], bundle)
    (missing,) = lines(("eval", bundle, "--device", "cpu"))
    assert missing == (
        f"error: {bundle} is a model bundle: give --store (the store it names was chosen by "
        "whoever exported it; a received file never chooses the data read)"
    )
    (tmp_path / "b" / "model2_eval").write_text("mine")
    (line,) = lines(("eval", bundle, "--store", hostile["store: sound folder"], "--device", "cpu"))
    assert line == (
        f"error: {tmp_path / 'b' / 'model2_eval'} is a file, where evaluating {bundle} writes "
        "its results folder; move it, or the model"
    )
    assert (tmp_path / "b" / "model2_eval").read_text() == "mine"


def test_received_json_is_bounded_and_checked_by_its_schema(hostile, tmp_path):
    """Item 18: deeply nested JSON (bundle members, a zip store's root, predictions.json),
    bundle members of the wrong shape, checkpoints that are no checkpoints or carry bad plain
    values: one error line each, naming the file."""
    predict = ("predict", "--images", hostile["images"], "--device", "cpu", "--out")
    bundles = [
        "model_json_nested",
        "metrics_json_nested",
        "provenance_empty",
        "provenance_list",
        "provenance_masker_x",
        "task_list",
        "in_channels_string",
    ]
    argvs = [(*predict, tmp_path / name, hostile[f"bundle: {name}"]) for name in bundles]
    argvs.append(("store", "info", hostile["store: zip root zarr.json nested"]))
    run = tmp_path / "run"
    shutil.copytree(hostile["checkpoint: sound"].parent, run)
    for name in ("batch_negative", "log_rows_without_keys"):
        argvs.append(
            (
                "export",
                hostile[f"checkpoint: {name}"].parent,
                tmp_path / f"{name}.zip",
                "--model-checkpoint",
                "last.pt",
            )
        )
    argvs += [
        (*predict, tmp_path / "passwd", run, "--model-checkpoint", "/etc/passwd"),
        ("export", run, tmp_path / "passwd.zip", "--model-checkpoint", "/etc/passwd"),
    ]
    found = lines(*argvs)
    expected = [
        "model.json: JSON nested 100000 levels deep, more than the 64 any samaug file has",
        "metrics.json: JSON nested 100001 levels deep",
        "provenance.json: 'masker' is a required property",
        "provenance.json: [] is not of type 'object'",
        "provenance.json: masker: 'x' is not of type 'object'",
        "model.json: task: ['x'] is not of type 'string'",
        "model.json: in_channels: '3' is not of type 'integer'",
        "zarr.json: JSON nested 100001 levels deep",
        "last.pt: batch: -3 is less than the minimum of 0: not a checkpoint of this samaug",
        "last.pt: log/1: 'epoch' is a required property",
        "/etc/passwd is not a checkpoint (a samaug checkpoint is the zip file torch.save writes",
        "/etc/passwd is not a checkpoint (a samaug checkpoint is the zip file torch.save writes",
    ]
    for line, words in zip(found, expected, strict=True):
        assert words in line, (line, words)
    assert not any((tmp_path / name).exists() for name in bundles)


def test_an_old_index_is_checked_before_anything_is_deleted(hostile, tmp_path):
    """Item 18: an old predictions.json in --out listing '.', '..', a subfolder or itself,
    or nested: one error line, every file still there."""
    names = ["nested", "lists .", "lists ..", "lists sub", "lists predictions.json"]
    folders = [tmp_path / str(k) for k in range(len(names))]
    for name, folder in zip(names, folders, strict=True):
        shutil.copytree(hostile[f"predictions: {name}"], folder)
    before = {folder: sorted(p.name for p in folder.iterdir()) for folder in folders}
    found = lines(
        *[
            (
                "predict",
                hostile["bundle: sound"],
                "--images",
                hostile["images"],
                "--out",
                f,
                "--device",
                "cpu",
            )
            for f in folders
        ]
    )
    assert "predictions.json: JSON nested 100000 levels deep" in found[0]
    for line, listed in zip(found[1:], [".", "..", None, "predictions.json"], strict=True):
        if listed is not None:
            assert f"lists {listed!r}, which is no file name of a prediction in this folder" in line
    assert "sub: listed in" in found[3] and "as a prediction file, but a folder" in found[3]
    assert {f: sorted(p.name for p in f.iterdir()) for f in folders} == before


def test_settings_out_of_range_are_one_line(hostile, tmp_path):
    """Item 18: a seed or a seed count of 1e20, a store URL nothing answers, an fsspec
    option samaug sets itself."""
    store = hostile["store: sound folder"]
    found = lines(
        ("train", "--store", store, "--out", tmp_path / "r", "--seed", 10**20),
        ("reproduce", "monuseg", "--store", store, "--seeds", 10**20, "--out", tmp_path / "p"),
        ("store", "info", "ftp://127.0.0.1:9/x"),
        ("store", "info", "http://127.0.0.1:9/x.zarr", "--storage-option", "asynchronous=false"),
    )
    assert found[0] == f"error: --seed must be at most {2**32 - 1}, not {10**20}"
    assert found[1] == f"error: --seeds must be at most 1000, not {10**20}"
    assert found[2].startswith("error: ftp://127.0.0.1:9/x: cannot reach it (")
    assert found[3] == (
        "error: --storage-option asynchronous: samaug sets it itself (stores are read "
        "asynchronously); leave it out"
    )


def test_the_corpus_json_bounds_leave_sound_files_alone(hostile):
    """The sound files of the corpus are read: a bundle, a run's checkpoint, an npz."""
    (ok,) = samaug_many(("store", "info", hostile["store: sound zip"]))
    assert ok.returncode == 0 and "3 of" not in ok.stderr
    with zipfile.ZipFile(hostile["bundle: sound"]) as archive:
        assert json.loads(archive.read("model.json"))["in_channels"] == 3
