"""Model packages: safetensors round trip, checksums, and refusal of pickles."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from BrainAgeLib.errors import ChecksumError, ModelPackageError, UnsafeWeightsError
from BrainAgeLib.package import CARD_NAME, ModelCard, load_package, read_card, save_package
from BrainAgeLib.spec import PreprocessSpec
from BrainAgeLib.model import ARCHITECTURE, DEFAULT_CONFIG
from conftest import SMALL_CONFIG, scaled_model


@pytest.fixture()
def package_copy(tmp_path, two_fold_package):
    return shutil.copytree(two_fold_package, tmp_path / "copy")


def test_round_trip_gives_identical_outputs(two_fold_package):
    package = load_package(two_fold_package)
    assert len(package.models) == 2
    x = torch.randn(1, 1, 80, 120, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for seed, model in enumerate(package.models):
            assert torch.equal(model(x), scaled_model(seed)(x))
    card = package.card
    assert card.preprocess_spec == PreprocessSpec()
    assert [f["file"] for f in card.folds] == ["fold0.safetensors", "fold1.safetensors"]
    assert all(len(f["sha256"]) == 64 for f in card.folds)


def test_card_keeps_calibration_spec_and_metrics(tmp_path):
    card = ModelCard(
        name="m", version="1", preprocess=PreprocessSpec(crop_center="image").to_dict(),
        calibration={"slope": 0.8, "intercept": 10.0, "method": "all", "n_controls": 5, "age_min": 20, "age_max": 80},
        training_data={"subjects": 12}, folds=[{"file": "fold0.safetensors", "metrics": {"val_mae": 3.2}}],
    )
    path = save_package(tmp_path / "p", [scaled_model(0)], card)
    again = read_card(path)
    assert again.preprocess_spec.crop_center == "image"
    assert again.calibration["slope"] == 0.8 and again.training_data == {"subjects": 12}
    assert again.folds[0]["metrics"] == {"val_mae": 3.2}
    with pytest.raises(FileExistsError):
        save_package(tmp_path / "p", [scaled_model(0)], card)


def test_tampered_weights_fail_the_checksum(package_copy):
    weights = package_copy / "fold1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="fold1.safetensors"):
        load_package(package_copy)


def test_pickled_weights_are_refused_without_unpickling(package_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, package_copy / "fold0.safetensors")  # a pickle disguised by its name
    with pytest.raises(UnsafeWeightsError):
        load_package(package_copy)
    assert not marker.exists()
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(UnsafeWeightsError, match="refused"):
        load_package(tmp_path / "model.pt")


def test_newer_format_unknown_architecture_and_missing_card(package_copy, tmp_path):
    card_path = package_copy / CARD_NAME
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(ModelPackageError, match="newer"):
        load_package(package_copy)
    card_path.write_text(json.dumps({**card, "architecture": {"name": "resnet"}}))
    with pytest.raises(ModelPackageError, match="architecture"):
        load_package(package_copy)
    card_path.write_text(json.dumps({**card, "preprocess": {**card["preprocess"], "version": 7}}))
    with pytest.raises(ModelPackageError, match="newer"):
        load_package(package_copy)
    with pytest.raises(ModelPackageError, match="no model_card.json"):
        load_package(tmp_path)


def test_same_weights_give_byte_identical_files_across_processes(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from BrainAgeLib.model import build_model\n"
        "from BrainAgeLib.package import ModelCard, save_package, read_card\n"
        "m = build_model({'init_features': 8, 'growth_rate': 4, 'block_config': [1, 1, 1, 1]}, seed=3)\n"
        "card = ModelCard(name='t', version='1', created='fixed')\n"
        "print(read_card(save_package(sys.argv[1], [m, m], card)).folds[1]['sha256'])\n"
    )
    digests = {subprocess.run([sys.executable, "-c", script, str(tmp_path / f"p{i}")], capture_output=True, text=True, check=True).stdout for i in range(3)}
    assert len(digests) == 1 and len(digests.pop().strip()) == 64


# --- loading without wasted work (issue 12) ----------------------------------------------------------

SMALL = {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}


def test_loading_runs_no_initialiser_and_builds_the_network_once(monkeypatch, tmp_path):
    from BrainAgeLib import package as package_module
    from BrainAgeLib.model import build_model

    models = [build_model(SMALL, seed=s).eval() for s in range(3)]
    path = save_package(tmp_path / "p", models, ModelCard(name="m", version="1", architecture={"name": "densenet169-3d-no-last-transition", "config": SMALL}))
    builds = []
    original_empty = package_module.empty_model
    monkeypatch.setattr(package_module, "empty_model", lambda config: builds.append(config) or original_empty(config))
    rng = torch.get_rng_state()
    loaded = load_package(path)
    assert len(builds) == 1  # one network built, its structure copied for the other folds
    assert torch.equal(torch.get_rng_state(), rng)  # no random initialisation ran
    build_model(SMALL)
    assert not torch.equal(torch.get_rng_state(), rng)  # (a normal build draws its Kaiming weights)
    x = torch.randn(1, 1, 80, 120, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for model, again in zip(models, loaded.models):
            assert torch.equal(model(x), again(x))
    assert len({id(m) for m in loaded.models}) == 3
    assert len({p.data_ptr() for m in loaded.models for p in m.parameters()}) == 3 * len(list(models[0].parameters()))


def test_fold_weights_are_memory_mapped_from_the_files(two_fold_package):
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs /proc/self/maps (Linux)")
    loaded = load_package(two_fold_package)
    for index, model in enumerate(loaded.models):
        weight = model.features.denseblock4.denselayer32.layers.conv2.weight
        file = str(two_fold_package / f"fold{index}.safetensors")
        ranges = [line.split()[0].split("-") for line in maps.read_text().splitlines() if line.endswith(file)]
        assert any(int(lo, 16) <= weight.data_ptr() < int(hi, 16) for lo, hi in ranges), file


def test_half_precision_files_load_as_float32(tmp_path):
    from BrainAgeLib.model import build_model

    model = build_model(SMALL, seed=4).eval()
    path = save_package(tmp_path / "half", [model.half()], ModelCard(name="h", version="1", architecture={"name": "densenet169-3d-no-last-transition", "config": SMALL}))
    loaded = load_package(path).models[0]
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    x = torch.randn(1, 1, 80, 120, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.float()(x), atol=1e-4)


def test_an_unchanged_package_is_hashed_once_and_any_change_is_hashed_again(package_copy, user_cache, monkeypatch):
    import BrainAgeLib.package as package_module

    hashed = []
    real = package_module.sha256_of
    monkeypatch.setattr(package_module, "sha256_of", lambda path: hashed.append(Path(path).name) or real(path))
    load_package(package_copy)
    assert sorted(hashed) == ["fold0.safetensors", "fold1.safetensors"]
    assert (user_cache / "digests.json").is_file()
    hashed.clear()
    again = load_package(package_copy)
    assert hashed == [] and len(again.models) == 2  # verified before, unchanged: not hashed
    # tamper with one byte and put the modification time back: the status-change time still differs
    weights = package_copy / "fold1.safetensors"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ChecksumError, match="fold1.safetensors"):
        load_package(package_copy)
    assert hashed == ["fold1.safetensors"]


def test_an_unwritable_digest_record_only_means_hashing_every_time(package_copy, tmp_path, monkeypatch):
    import BrainAgeLib.package as package_module

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("BRAINAGE_CACHE", str(blocker))  # the record cannot be written below a file
    hashed = []
    real = package_module.sha256_of
    monkeypatch.setattr(package_module, "sha256_of", lambda path: hashed.append(path) or real(path))
    for _ in range(2):
        assert len(load_package(package_copy).models) == 2
    assert len(hashed) == 4


def test_fast_assignment_equals_load_state_dict_and_refuses_what_it_refuses(two_fold_package):
    from safetensors.torch import load_file

    from BrainAgeLib.model import empty_model
    from BrainAgeLib.package import assign_state

    card = read_card(two_fold_package)
    state = load_file(str(two_fold_package / "fold1.safetensors"))
    ours, theirs = empty_model(card.architecture["config"]), empty_model(card.architecture["config"])
    assign_state(ours, dict(state))
    theirs.load_state_dict(dict(state), strict=True, assign=True)
    assert {k: v.data_ptr() for k, v in ours.state_dict().items()} == {k: v.data_ptr() for k, v in state.items()}  # no copy
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == [n for n, _ in theirs.named_parameters()]
    x = torch.randn(1, 1, 80, 120, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), theirs.eval()(x))
    first = next(iter(state))
    with pytest.raises(RuntimeError, match="missing keys"):
        assign_state(empty_model(card.architecture["config"]), {k: v for k, v in state.items() if k != first})
    with pytest.raises(RuntimeError, match="unexpected keys"):
        assign_state(empty_model(card.architecture["config"]), {**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        assign_state(empty_model(card.architecture["config"]), {**state, first: torch.zeros(2, 2)})


def test_weights_of_another_size_are_a_package_error(package_copy):
    from safetensors.torch import load_file, save_file

    weights = package_copy / "fold0.safetensors"
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.ndim > 1)
    save_file({**state, key: torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)}, str(weights))
    card = json.loads((package_copy / CARD_NAME).read_text())
    from BrainAgeLib.file_digests import sha256_of

    card["folds"][0]["sha256"] = sha256_of(weights)
    (package_copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ModelPackageError, match="do not fit the card's architecture"):
        load_package(package_copy)


def test_a_safetensors_header_starting_with_the_pickle_mark_loads(tmp_path):
    """A header of 128 + 256 k bytes starts the file with 0x80, pickle's first byte: still safetensors."""
    from safetensors.torch import save_file

    from BrainAgeLib.package import _is_safetensors

    path = tmp_path / "w.safetensors"
    for padding in range(300):  # a metadata value of growing length moves the header length through 0x80
        save_file({"w": torch.zeros(2)}, str(path), metadata={"pad": "x" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80 and _is_safetensors(path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "p.safetensors")
    assert not _is_safetensors(tmp_path / "p.safetensors")


def test_several_networks_per_fold_with_their_own_architectures(tmp_path):
    """An ensemble package: entries name their files and carry their own config; each loads as saved."""
    wide = {**SMALL_CONFIG, "growth_rate": 6}
    models = [scaled_model(0, config=SMALL_CONFIG), scaled_model(1, config=wide), scaled_model(2, config=SMALL_CONFIG)]
    entries = [{"file": "fold0-a.safetensors"}, {"file": "fold0-b.safetensors", "config": {**DEFAULT_CONFIG, **wide}},
               {"file": "fold1-a.safetensors", "metrics": {"cv_fold": 1}}]
    card = ModelCard(name="ens", version="1", folds=entries,
                     architecture={"name": ARCHITECTURE, "config": {**DEFAULT_CONFIG, **SMALL_CONFIG}})
    loaded = load_package(save_package(tmp_path / "ens", models, card))
    assert [f["file"] for f in loaded.card.folds] == ["fold0-a.safetensors", "fold0-b.safetensors", "fold1-a.safetensors"]
    assert loaded.card.folds[2]["metrics"] == {"cv_fold": 1}
    x = torch.randn(1, 1, 80, 120, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for model, original in zip(loaded.models, models):
            assert torch.equal(model(x), original(x))
    assert loaded.models[1].features.denseblock1.denselayer1.layers.conv2.out_channels == 6
    assert loaded.models[0].features.denseblock1.denselayer1.layers.conv2.out_channels == 4
