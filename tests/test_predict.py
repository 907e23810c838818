"""Results that leave the tool: `samaug predict` with the model's own masker, prediction
files scored by `samaug score` to eval's numbers, model bundles, and unsafe models refused.

The model: a tiny U-Net trained one epoch (mode joint, task binary: its probability-based
scores are non-trivial even untrained) on priors of a tiny random SAM."""

import dataclasses
import io
import json
import re
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from precompute.imageio import read_pixels
from precompute.listing import safe_id
from precompute.store import open_store
from precompute.types import InputError, SamaugError, SettingError
from tests.support.cli import samaug
from tests.support.tiny_sam import save_tiny_sam
from tests.support.train_helpers import RunsCode, new_images, tiny_joint_run
from train.inference.predictor import PredictSettings
from train.modes import get_mode
from train.results.bundle import export_bundle
from train.results.evaluation import evaluate_run
from train.results.loading import read_model
from train.results.prediction_files import read_index, write_prediction
from train.results.prediction_reader import read_prediction
from train.results.provenance import masker_for
from train.results.saving import FileSettings, save_probs
from train.results.scoring import prepare_scoring, score_folder
from train.results.serving import PredictConfig, predict, prepare_prediction
from train.tasks import get_task

PROBABILITIES = FileSettings(probabilities=True, probability_format="tif")  # float32: exact


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sam_checkpoint):
    """(data folder, store, run directory) of the tiny joint model."""
    return tiny_joint_run(tmp_path_factory.mktemp("predict"), tiny_sam_checkpoint)


def test_predict_computes_the_priors_with_the_recorded_masker_and_scores_as_eval(trained, tmp_path):
    data, store, run_dir = trained
    config = PredictConfig(
        model=str(run_dir),
        out=str(tmp_path / "predicted"),
        images=str(new_images(data, tmp_path / "new")),
        masker_store=str(tmp_path / "priors.zarr"),
        workers=0,
        device="cpu",
        settings=PredictSettings(tta="flip"),
        files=PROBABILITIES,
    )
    calls = []
    summary = predict(config, progress=lambda *call: calls.append(call))
    assert summary.failures == [] and len(summary.entries) == 2
    assert ("priors", 2, 2) in calls and ("predict", 2, 2) in calls

    # The priors: made by the training store's masker, so equal to the training priors.
    trained_on, computed = open_store(store), open_store(tmp_path / "priors.zarr")
    for key in ("kind", "settings", "checkpoint_sha256", "config"):
        assert computed.attrs["masker"][key] == trained_on.attrs["masker"][key]
    assert computed.ids() == ["testA_1", "testA_2"]
    for image_id in computed.ids():
        for name in ("seg_prior", "boundary_prior"):
            assert np.array_equal(computed.read(image_id, name), trained_on.read(image_id, name))

    # What the files say, and their scores: eval's, for the strategy predict chose.
    made_by = read_index(tmp_path / "predicted")["made_by"]
    assert made_by["strategy"] == "select"  # a joint model's default
    assert made_by["provenance"]["masker"] == trained_on.attrs["masker"]
    assert made_by["settings"]["tta"] == "flip" and made_by["model"]["task"] == "binary"
    results = evaluate_run(
        run_dir,
        device="cpu",
        splits=["testA"],
        settings=PredictSettings(tta="flip"),
        files=PROBABILITIES,
        save_predictions=tmp_path / "evaluated",
    )
    assert json.loads((run_dir / "metrics.json").read_text())["test_settings"]["tta"] == "flip"
    scored = score_folder(prepare_scoring(tmp_path / "predicted", str(store), ["testA"]))
    assert scored == {"testA": results["testA"]["select"]}
    assert 0 < scored["testA"]["mae"] < 1 and 0 < scored["testA"]["s_measure"] < 1
    for strategy in ("raw", "ensemble"):
        folder = tmp_path / "evaluated" / "testA" / strategy
        scored = score_folder(prepare_scoring(folder, str(store)))  # the recorded split
        assert scored == {"testA": results["testA"][strategy]}
    per_image = (tmp_path / "predicted" / "scores_per_image.csv").read_text().splitlines()
    assert per_image[0].startswith("split,image_id,mean_dice") and len(per_image) == 3

    # The raw strategy needs no priors: the pixels alone, as eval's raw.
    raw = dataclasses.replace(config, out=str(tmp_path / "raw"), strategy="raw", masker_store=None)
    assert predict(raw).priors is None
    assert score_folder(prepare_scoring(tmp_path / "raw", str(store), ["testA"])) == {
        "testA": results["testA"]["raw"]
    }

    # A rerun reuses the kept priors; without TTA the probabilities are others.
    flipped = read_prediction(tmp_path / "predicted" / "testA_1_probability.tif")
    again = predict(dataclasses.replace(config, settings=PredictSettings(tta="none")))
    assert again.priors.skipped == 2 and again.priors.done == 0
    assert read_index(tmp_path / "predicted")["made_by"]["settings"]["tta"] == "none"
    plain = read_prediction(tmp_path / "predicted" / "testA_1_probability.tif")
    assert np.abs(plain - flipped).max() > 1e-4

    # Another folder whose image has a name the kept store already holds: its priors would
    # be another image's, so the store is refused, naming the file, and nothing is written.
    other = tmp_path / "other"
    other.mkdir()
    pixels = read_pixels(data / "train_1.bmp")
    Image.fromarray(pixels).save(other / "testA_1.png")
    shutil.copy(data / "testA_2.bmp", other / "testA_2.bmp")  # the same pixels: fine
    moved = dataclasses.replace(config, images=str(other), out=str(tmp_path / "moved"))
    with pytest.raises(
        SettingError,
        match=r"holds priors of other images under the names of "
        rf"{re.escape(str(other / 'testA_1.png'))} \(their pixels",
    ):
        predict(moved)
    assert not (tmp_path / "moved").exists()

    # A file the kept store holds priors of, unreadable now: a failure naming the file, never
    # predicted from the store's old copy of its pixels; the other image is predicted.
    (tmp_path / "new" / "testA_2.bmp").write_bytes(b"BM not an image")
    broken = predict(dataclasses.replace(config, out=str(tmp_path / "broken")))
    assert [image_id for image_id, _ in broken.failures] == ["testA_2"]
    assert str(tmp_path / "new" / "testA_2.bmp") in broken.failures[0][1]
    assert [entry["image_id"] for entry in broken.entries] == ["testA_1"]


def test_another_sam_checkpoint_is_refused_naming_both_hashes(trained, tmp_path):
    data, store, run_dir = trained
    other = save_tiny_sam(tmp_path / "other.pth", seed=1)
    config = PredictConfig(
        model=str(run_dir),
        out=str(tmp_path / "out"),
        images=str(new_images(data, tmp_path / "new")),
        checkpoint=str(other),
        device="cpu",
    )
    state, _ = read_model(run_dir)
    want = state["store"]["masker"]["checkpoint_sha256"]
    with pytest.raises(SettingError, match=f"sha256 [0-9a-f]{{64}}, but .* sha256 {want}"):
        prepare_prediction(config)
    assert not (tmp_path / "out").exists()  # refused before anything was made
    # The recorded checkpoint gone from this machine: say where it was and what to give.
    moved = {**state, "store": {**state["store"]}}
    moved["store"]["masker"] = {**state["store"]["masker"], "checkpoint": "/gone/sam.pth"}
    with pytest.raises(SettingError, match=r"recorded as /gone/sam.pth .* give its path"):
        masker_for(moved)


def test_each_mode_serves_its_strategies():
    assert [get_mode(mode).strategy() for mode in ("raw", "samaug", "joint")] == [
        "raw",
        "samaug",
        "select",
    ]
    assert get_mode("joint").strategy("ensemble") == "ensemble"
    for mode, strategy in (("raw", "samaug"), ("samaug", "select"), ("samaug", "raw")):
        with pytest.raises(SettingError, match=f"--mode {mode} serves only"):
            get_mode(mode).strategy(strategy)


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread here and in the subprocesses: float sums then add up in one order,
    so two processes give the same bits (thread counts may differ between them)."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_bundle_predicts_the_same_in_a_fresh_process_and_evaluates(trained, tmp_path, one_thread):
    data, store, run_dir = trained
    bundle = tmp_path / "shared" / "model.zip"
    result = samaug("export", str(run_dir), str(bundle))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["model.safetensors", "model.json", "provenance.json", "metrics.json", "README.md"]
        )
        readme = archive.read("README.md").decode()
        assert open_store(store).attrs["masker"]["checkpoint_sha256"] in readme
        assert "samaug predict model.zip --images" in readme

    result = samaug(
        "predict", str(bundle), "--store", str(store), "--split", "testA",
        "--out", str(tmp_path / "from_bundle"), "--device", "cpu",
        "--save-probabilities", "--probability-format", "tif",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bars where the output is not a terminal
    assert "2 images predicted (select)" in result.stdout
    predict(
        PredictConfig(
            model=str(run_dir),
            out=str(tmp_path / "from_run"),
            store=str(store),
            splits=("testA",),
            device="cpu",
            files=PROBABILITIES,
        )
    )
    a, b = (
        read_pixels(tmp_path / folder / "testA_1.png") for folder in ("from_bundle", "from_run")
    )
    assert np.array_equal(a, b)
    # The probabilities: equal bit for bit when the machine is quiet; under a loaded full
    # suite they have differed in the last float32 bits (not understood yet, see the notes).
    a, b = (
        read_pixels(tmp_path / folder / "testA_2_probability.tif")
        for folder in ("from_bundle", "from_run")
    )
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)

    from_run = evaluate_run(run_dir, device="cpu", splits=["testA"])
    # Scored on the split predictions.json records (testA), the numbers of eval's select.
    result = samaug("score", str(tmp_path / "from_bundle"), "--store", str(store))
    assert result.returncode == 0, result.stderr
    header, _, row = result.stdout.splitlines()[:3]
    assert header.split()[:3] == ["predictions", "split", "mean_dice"]
    assert row.split()[:3] == [
        "from_bundle",
        "testA",
        f"{from_run['testA']['select']['mean_dice']:.4f}",
    ]
    scores = json.loads((tmp_path / "from_bundle" / "scores.json").read_text())
    # Equal to the last digits when the probabilities are (see above).
    assert scores["scores"]["testA"] == pytest.approx(from_run["testA"]["select"], abs=1e-9)

    assert evaluate_run(bundle, str(store), ["testA"], device="cpu") == from_run
    results = bundle.with_name("model_eval")
    assert json.loads((results / "metrics.json").read_text())["test"] == from_run
    assert json.loads((results / "config.json").read_text())["mode"] == "joint"


def test_models_that_would_run_code_are_refused(trained, tmp_path):
    _, _, run_dir = trained
    marker = tmp_path / "code_ran"
    hostile_state = {
        **torch.load(run_dir / "best.pt", weights_only=True),
        "model": RunsCode(marker),
    }
    hostile = tmp_path / "hostile.pt"
    torch.save(hostile_state, hostile)
    with pytest.raises(SamaugError, match="refused: it asks to build posix.system"):
        prepare_prediction(PredictConfig(model=str(hostile), out=str(tmp_path / "o"), store="x"))

    bundle = export_bundle(run_dir, tmp_path / "model.zip")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(tampered, "w") as target:
        for name in source.namelist():
            if name != "model.safetensors":
                target.writestr(name, source.read(name))
        pickled = io.BytesIO()
        torch.save({"weights": RunsCode(marker)}, pickled)
        target.writestr("model.safetensors", pickled.getvalue())
    with pytest.raises(SamaugError, match="model.safetensors is not a safetensors file"):
        read_model(tampered)
    assert not marker.exists()


def test_instance_label_maps_read_back_score_as_the_probabilities_did(tmp_path):
    # Probabilities that make objects: interior inside three of four ground-truth glands.
    label = np.zeros((48, 64), np.int32)
    for index, (y, x) in enumerate([(4, 4), (4, 36), (28, 8), (28, 40)], start=1):
        label[y : y + 16, x : x + 20] = index
    probs = np.zeros((3, 48, 64), np.float32)
    probs[0] = 1
    for index in (1, 2, 4):
        probs[:, label == index] = np.array([0.1, 0.8, 0.1], np.float32)[:, None]
    task = get_task("glands")
    labels = tmp_path / "labels"
    labels.mkdir()
    write_prediction(labels, "img", labels=label)
    save_probs(
        tmp_path / "pred", {"image_id": "img"}, torch.from_numpy(probs)[None], task, FileSettings()
    )
    scored = score_folder(prepare_scoring(tmp_path / "pred", labels=labels, task="glands"))
    expected = task.score(probs, label, 10)
    assert 0 < expected["object_f1"] < 1
    assert scored["labels"] == task.aggregate([expected])


def test_score_names_missing_and_extra_predictions_and_a_size_mismatch(tmp_path):
    labels, pred = tmp_path / "labels", tmp_path / "pred"
    square = np.zeros((8, 8), np.int32)
    square[2:6, 2:6] = 1
    for image_id in ("a", "b"):
        write_prediction(labels, image_id, labels=square)
    write_prediction(pred, "a", labels=square)
    write_prediction(pred, "c", labels=square)
    with pytest.raises(SamaugError, match=r"no prediction for 1 of 2 images \(b\)") as err:
        prepare_scoring(pred, labels=labels, task="nuclei")
    assert "1 of its predictions (c.png, ...) are of images the ground truth" in str(err.value)
    write_prediction(pred, "b", labels=np.zeros((8, 9), np.int32))
    job = prepare_scoring(pred, labels=labels, task="nuclei")
    assert [p.name for p in job.extra] == ["c.png"]
    with pytest.raises(
        InputError, match=r"b.png: prediction is 8 x 9 \(H x W\) but its image is 8 x 8"
    ):
        score_folder(job)
    write_prediction(pred, "b", labels=square)
    scores = score_folder(prepare_scoring(pred, labels=labels, task="nuclei"))
    assert scores["labels"]["aji"] == 1.0 and scores["labels"]["pq"] == 1.0
    assert np.array_equal(read_prediction(pred / "b.png"), square)
    with pytest.raises(SettingError, match="give --task"):
        prepare_scoring(pred, labels=labels)


def test_score_matches_labels_and_predictions_by_the_image_id_predict_writes(tmp_path):
    # predict names files by image ID (the stem made safe); labels and other tools' files
    # keep their names: all three meet at the one ID rule.
    labels, ours, theirs = tmp_path / "labels", tmp_path / "ours", tmp_path / "theirs"
    square = np.zeros((8, 8), np.int32)
    square[2:6, 2:6] = 1
    labels.mkdir()
    for stem in ("a b", "c(1)", "d"):
        Image.fromarray(square.astype(np.uint8)).save(labels / f"{stem}.png")
        write_prediction(ours, safe_id(stem), labels=square)
        write_prediction(theirs, "tmp", labels=square)
        (theirs / "tmp.png").rename(theirs / f"{stem}.png")
    for folder in (ours, theirs):
        job = prepare_scoring(folder, labels=labels, task="nuclei")
        assert [image_id for _, image_id in job.images] == ["a_b", "c_1_", "d"]
        assert score_folder(job)["labels"]["aji"] == 1.0 and job.extra == []
    Image.fromarray(square.astype(np.uint8)).save(labels / "a_b.png")
    with pytest.raises(
        SamaugError, match=r"a b\.png and .*a_b\.png are both labels of image 'a_b'"
    ):
        prepare_scoring(ours, labels=labels, task="nuclei")


def test_predict_and_eval_name_the_images_where_nothing_was_predicted(trained, tmp_path):
    data, store, run_dir = trained
    # The run's model made to predict background everywhere: its head's bias far below zero.
    blind = tmp_path / "blind"
    shutil.copytree(run_dir, blind)
    state = torch.load(blind / "best.pt", map_location="cpu", weights_only=False)
    state["model"]["head.bias"] = torch.full_like(state["model"]["head.bias"], -1e4)
    torch.save(state, blind / "best.pt")

    images = new_images(data, tmp_path / "new")
    predicted = samaug(
        "predict", blind, "--images", images, "--out", tmp_path / "out", "--strategy", "raw"
    )
    assert predicted.returncode == 0, predicted.stderr
    warning = f"warning: {tmp_path / 'out'}: nothing predicted in 2 of 2 images: testA_1, testA_2"
    assert warning in predicted.stderr.splitlines()
    assert [e["objects"] for e in read_index(tmp_path / "out")["images"]] == [0, 0]

    evaluated = samaug("eval", blind, "--split", "testA", "--device", "cpu")
    assert evaluated.returncode == 0, evaluated.stderr
    for strategy in ("raw", "samaug", "ensemble", "select"):
        line = f"warning: {blind} testA/{strategy}: nothing predicted in 2 of 2 images"
        assert f"{line}: testA_1, testA_2" in evaluated.stderr.splitlines()
    empty = json.loads((blind / "metrics.json").read_text())["test_empty"]
    assert empty == {"testA": {s: ["testA_1", "testA_2"] for s in empty["testA"]}}
    assert sorted(empty["testA"]) == ["ensemble", "raw", "samaug", "select"]

    # The trained model predicts something somewhere: no warning names its images.
    fine = samaug("eval", run_dir, "--split", "testA", "--device", "cpu")
    assert fine.returncode == 0 and "nothing predicted" not in fine.stderr
