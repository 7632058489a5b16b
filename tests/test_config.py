import json
import subprocess
import sys

import pytest

from dynprune import cli
from dynprune.config import ConfigError, build, resolve, runs_of

from conftest import PROJECT

PARAM_FILES = sorted((PROJECT / "params").glob("dynamic_pruning/*.yaml"))
TRAINING_FILES = sorted(p for kind in ("dynamic_pruning", "lottery", "ticket") for p in (PROJECT / "params").glob(f"{kind}/*.yaml"))


@pytest.mark.parametrize("path", TRAINING_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_parameter_file_resolves_in_both_profiles(path):
    paper, quick = resolve(path, "paper"), resolve(path, "quick")
    assert paper.name == quick.name == path.stem
    assert quick.epochs <= 6 and quick.epochs <= paper.epochs
    assert quick.final_sparsity == paper.final_sparsity, "the quick profile must keep the target sparsity"
    assert path.parent.name != "lottery" or paper.method == "imp"
    assert path.parent.name != "ticket" or paper.method == "ticket_check"


@pytest.mark.parametrize("path", sorted((PROJECT / "params").glob("compare/*.yaml")), ids=lambda p: p.stem)
def test_every_comparison_names_existing_experiments(path):
    for profile in ("paper", "quick"):
        cfg = resolve(path, profile)
        for name in cfg.inputs:
            assert (PROJECT / "params" / f"{name}.yaml").is_file(), name
        assert {cfg.dense, cfg.dynamic} <= set(cfg.inputs) and (not cfg.ticket or cfg.ticket in cfg.inputs)


def test_the_seed_experiments_are_all_there():
    names = {p.stem for p in PARAM_FILES}
    seed = {"cifar10_val", "cifar10_noval", "mnist_val", "mnist_noval", "cifar10_bs32", "cifar10_lr0.001",
            "cifar10_lr0.01", "cifar10_ep30_bs32", "cifar10_ep400", "cifar10_resnet34", "mnist_bs32",
            "mnist_lr0.001", "mnist_momentum0.5", "mnist_ep100"}
    paper = {f"resnet18_s{s}" for s in ("70", "72.9", "75", "80", "85", "90", "95")} | {
        "resnet18_dense", "vgg_like_s97", "vgg19_s98", "lenet_s78.9", "lenet_s98"}
    assert seed | paper <= names
    for name in seed | paper:
        assert resolve(PROJECT / "params" / "dynamic_pruning" / f"{name}.yaml").reported_accuracy is not None


BAD = [
    (dict(final_sparsty=0.8), "unknown parameter 'final_sparsty' (did you mean 'final_sparsity'?)"),
    (dict(epochs="ten"), "parameter 'epochs' must be of type int"),
    (dict(epochs=True), "parameter 'epochs' must be of type int"),
    (dict(hflip="yes"), "parameter 'hflip' must be of type bool"),
    (dict(final_sparsity=1.0), "parameter 'final_sparsity' is 1.0; it must be >= 0.0 and < 1.0"),
    (dict(final_sparsity=-0.1), "parameter 'final_sparsity' is -0.1"),
    (dict(epochs=0), "parameter 'epochs' is 0; it must be >= 1"),
    (dict(batch_size=0), "parameter 'batch_size' is 0"),
    (dict(lr=0), "parameter 'lr' is 0.0; it must be > 0.0"),
    (dict(val_fraction=1.0), "parameter 'val_fraction' is 1.0"),
    (dict(epochs=30, prune_end_epoch=31), "parameter 'prune_end_epoch' is 31 but the run has only 30 epochs"),
    (dict(dataset="imagenet"), "parameter 'dataset' is 'imagenet'; allowed: mnist, fashion_mnist, cifar10"),
    (dict(model="resnet50"), "allowed: lenet_300_100, conv4, resnet18"),
    (dict(optimizer="rmsprop"), "allowed: sgd, adam"),
    (dict(lr_schedule="step"), "allowed: cosine, onecycle, multistep, constant"),
    (dict(sparsity_schedule="exp"), "allowed: linear, cubic, oneshot"),
    (dict(lr_schedule="multistep"), "needs lr_milestones"),
    (dict(grid=[0.5, 0.9]), "parameter 'grid' must map parameter names to lists of values"),
    (dict(grid=dict(final_sparsty=[0.5])), "grid: unknown parameter 'final_sparsty' (did you mean 'final_sparsity'?)"),
    (dict(grid=dict(seed=[1, 2])), "grid: 'seed' cannot vary inside one parameter file"),
    (dict(grid=dict(final_sparsity=0.5)), "grid: 'final_sparsity' must be a non-empty list"),
    (dict(grid=dict(final_sparsity=[])), "grid: 'final_sparsity' must be a non-empty list"),
    (dict(grid=dict(final_sparsity=[0.5, 1.0])), "parameter 'final_sparsity' is 1.0; it must be >= 0.0 and < 1.0"),
    (dict(grid=dict(final_sparsity=[0.5, 0.5])), "grid: 'final_sparsity' lists a value twice"),
    (dict(grid=dict(model=["conv4", "resnet50"])), "parameter 'model' is 'resnet50'"),
    (dict(epochs=30, grid=dict(epochs=[20, 40], prune_end_epoch=[30])),
     "grid point epochs=20,prune_end_epoch=30: parameter 'prune_end_epoch' is 30 but the run has only 20 epochs"),
]


@pytest.mark.parametrize("values,message", BAD, ids=[str(v) for v, _ in BAD])
def test_bad_parameters_are_refused_with_one_line(values, message):
    with pytest.raises(ConfigError) as e:
        build(values)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_grid_is_every_combination_times_every_seed_each_in_its_own_folder():
    cfg = build(dict(seeds=[1, 2], grid=dict(final_sparsity=[0.5, 0.9], lr=[0.1, 0.01])))
    runs = runs_of(cfg)
    assert len(runs) == 8
    assert runs[0].folder == "final_sparsity=0.5,lr=0.1/seed1" and runs[-1].folder == "final_sparsity=0.9,lr=0.01/seed2"
    assert len({r.folder for r in runs}) == 8
    for run in runs:
        assert run.cfg.grid == {} and run.cfg.seeds == () and run.cfg.seed in (1, 2)
        assert (run.cfg.final_sparsity, run.cfg.lr) == (run.point["final_sparsity"], run.point["lr"])
    assert [r.folder for r in runs_of(build(dict(seed=7)))] == ["seed7"]  # no grid: the folders as before
    assert build(dict(grid=dict(final_sparsity=[0, 0.9]))).grid == {"final_sparsity": (0.0, 0.9)}


def test_ints_are_accepted_for_floats():
    assert build(dict(lr=1)).lr == 1.0


@pytest.mark.parametrize("text,message", [
    ("", "is empty"), ("epochs: [1\n", "is not valid YAML at line"), ("- 1\n- 2\n", "must be a mapping"),
    ("epochs: 3\nlearning_rate: 0.1\n", "unknown parameter 'learning_rate'")])
def test_bad_parameter_files(tmp_path, text, message):
    (tmp_path / "dynamic_pruning").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "paper.yaml").write_text("")
    path = tmp_path / "dynamic_pruning" / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        resolve(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match="profile 'fast' has no file .* known profiles: paper, quick"):
        resolve(PARAM_FILES[0], "fast")


def test_config_command_prints_what_would_run(capsys):
    assert cli.main(["config", str(PROJECT / "params/dynamic_pruning/cifar10_val.yaml"), "--profile", "quick",
                     "--epochs", "2", "--no-hflip", "--prune-end-epoch", "none"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["epochs"] == 2 and resolved["hflip"] is False and resolved["prune_end_epoch"] is None
    assert resolved["width"] == 0.125 and resolved["final_sparsity"] == 0.8 and resolved["name"] == "cifar10_val"


def test_cli_refuses_bad_input_with_one_line_and_nonzero_exit(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "dynprune", "train", "--dataset", "mnist", "--epochs", "5",
                           "--prune-end-epoch", "9", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "dynprune: error: parameter 'prune_end_epoch' is 9 but the run has only 5 epochs; "
        "use a value <= epochs (or null for the last epoch)"]
    assert not out.exists()
