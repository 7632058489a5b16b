import json
import subprocess
import sys

import pytest

from dynprune import cli
from dynprune.config import ConfigError, build, resolve, runs_of
from dynprune.config.claims_file import read_claims

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


def test_the_seed_experiments_are_all_there():
    names = {p.stem for p in PARAM_FILES}
    seed = {"cifar10_val", "cifar10_noval", "mnist_val", "mnist_noval", "cifar10_bs32", "cifar10_lr0.001",
            "cifar10_lr0.01", "cifar10_ep30_bs32", "cifar10_ep400", "cifar10_resnet34", "mnist_bs32",
            "mnist_lr0.001", "mnist_momentum0.5", "mnist_ep100"}
    paper = {f"resnet18_s{s}" for s in ("70", "72.9", "75", "80", "85", "90", "95")} | {
        "resnet18_dense", "vgg_like_s97", "vgg19_s98", "lenet_s78.9", "lenet_s98"}
    assert seed | paper <= names
    claims = read_claims(PROJECT / "params")
    for name in seed | paper:  # each with the number its source published
        assert claims.accuracy_claims(f"dynamic_pruning/{name}"), name


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
    (dict(model="resnet101"), "allowed: lenet_300_100, conv4, resnet18"),
    (dict(optimizer="rmsprop"), "allowed: sgd, adam"),
    (dict(lr_schedule="step"), "allowed: cosine, onecycle, multistep, constant"),
    (dict(sparsity_schedule="exp"), "allowed: linear, linear_paper, cubic, oneshot"),
    (dict(lr_schedule="multistep"), "needs lr_milestones"),
    (dict(final_sparsity=float("nan")), "parameter 'final_sparsity' is nan; it must be a finite number"),
    (dict(lr=float("inf")), "parameter 'lr' is inf; it must be a finite number"),
    (dict(momentum=float("nan")), "parameter 'momentum' is nan"),
    (dict(weight_decay=float("-inf")), "parameter 'weight_decay' is -inf"),
    (dict(rotation=float("nan")), "parameter 'rotation' is nan"),
    (dict(translate=float("nan")), "parameter 'translate' is nan"),
    (dict(seed=10**23), "parameter 'seed' is 100000000000000000000000; it must be >= 0 and <= 2147483647"),
    (dict(seeds=[1, -2]), "parameter 'seeds' is -2"),
    (dict(name="/abs/path"), "parameter 'name' '/abs/path' is not a plain name"),
    (dict(name="../../x"), "parameter 'name' '../../x' is not a plain name"),
    (dict(name=".hidden"), "is not a plain name"),
    (dict(name="a b"), "is not a plain name"),
    (dict(method="ticket_check", ticket_from="../../etc/passwd"), "must name an experiment as <notebook>/<name>"),
    (dict(method="ticket_check", ticket_from="/abs/x"), "must name an experiment as <notebook>/<name>"),
    (dict(method="ticket_check", ticket_from="dynamic_pruning/x/../y"), "must name an experiment"),
    (dict(method="ticket_check"), "needs ticket_from"),
    (dict(ticket_from="dynamic_pruning/x"), "only for method ticket_check"),
    (dict(epochs=10, prune_end_epoch=10), "which a 10-epoch run never starts"),
    (dict(sparsity_schedule="linear_paper", epochs=10, prune_end_epoch=11), "has only 10 epochs"),
    (dict(imp_layer_rates={"fc.*": 0.1}), "needs prune_scope: layerwise"),
    (dict(prune_scope="layerwise", imp_layer_rates={"fc.*": 1.5}), "rates must be > 0 and < 1"),
    (dict(prune_scope="layerwise", imp_layer_rates={"fc.*": float("nan")}), "is nan"),
    (dict(imp_layer_rates=[0.1]), "parameter 'imp_layer_rates' must be of type mapping"),
    (dict(processes=2, method="imp"), "processes' > 1 is for one training run"),
    (dict(grid=dict(lr=[0.1, 0.1])), "grid: 'lr' lists a value twice"),
    (dict(grid=dict(name=["a", "b"])), "grid: 'name' cannot vary"),
    (dict(grid={1: [0.5]}), "grid: parameter names are text; got 1"),
    (dict(grid=dict(lr=[0.1, float("nan")])), "parameter 'lr' is nan"),
    (dict(grid=[0.5, 0.9]), "parameter 'grid' must map parameter names to lists of values"),
    (dict(grid=dict(final_sparsty=[0.5])), "grid: unknown parameter 'final_sparsty' (did you mean 'final_sparsity'?)"),
    (dict(grid=dict(seed=[1, 2])), "grid: 'seed' cannot vary inside one parameter file"),
    (dict(grid=dict(final_sparsity=0.5)), "grid: 'final_sparsity' must be a non-empty list"),
    (dict(grid=dict(final_sparsity=[])), "grid: 'final_sparsity' must be a non-empty list"),
    (dict(grid=dict(final_sparsity=[0.5, 1.0])), "parameter 'final_sparsity' is 1.0; it must be >= 0.0 and < 1.0"),
    (dict(grid=dict(final_sparsity=[0.5, 0.5])), "grid: 'final_sparsity' lists a value twice"),
    (dict(grid=dict(model=["conv4", "resnet101"])), "parameter 'model' is 'resnet101'"),
    (dict(epochs=30, grid=dict(epochs=[20, 40], prune_end_epoch=[30])),
     "grid point epochs=20, prune_end_epoch=30: parameter 'prune_end_epoch' is 30 but the run has only 20 epochs"),
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
    assert runs[0].folder == "final_sparsity=0.5/lr=0.1/seed1" and runs[-1].folder == "final_sparsity=0.9/lr=0.01/seed2"
    assert runs[0].label == "final_sparsity=0.5, lr=0.1"
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


def test_grid_folders_are_lossless_plain_names_for_any_value():
    """Close floats, lists, patterns with '/' or '*': every point its own plain folder, never '..'."""
    import re
    from dynprune.config.grid import VALUE_TEXT
    cfg = build(dict(grid=dict(lr=[0.1, 0.1000001, 1e-05], prune_exclude=[["fc.*"], ["../x"], []],
                               lr_milestones=[[], [100, 150]], prune_end_epoch=[None, 150])))
    folders = [r.folder for r in runs_of(cfg)]
    assert len(set(folders)) == len(folders) == 3 * 3 * 2 * 2
    assert "lr=0.1/" in folders[0] and any("lr=0.1000001/" in f for f in folders) and any("lr=1e-05/" in f for f in folders)
    for folder in folders:
        *points, seed = folder.split("/")
        assert re.fullmatch(r"seed\d+", seed), folder
        for part in points:  # <field>=<value as it is, or a hash of it>
            key, _, value = part.partition("=")
            assert key in ("lr", "prune_exclude", "lr_milestones", "prune_end_epoch") and VALUE_TEXT.fullmatch(value)
        assert ".." not in folder.split("/")
    assert any("lr_milestones=100_150" in f for f in folders) and any("prune_end_epoch=null" in f for f in folders)


@pytest.mark.parametrize("text,message", [
    ("epochs: 3\nepochs: 4\n", "duplicate key 'epochs'"),
    ("1: 3\n", "parameter names are text; got 1 (int)"),
    ("null: 3\n", "parameter names are text; got None"),
    ("grid: {lr: [0.1, 0.2], lr: [0.3]}\n", "duplicate key 'lr'"),
    ("epochs: .nan\n", "parameter 'epochs' must be of type int"),
    ("rotation: .nan\n", "parameter 'rotation' is nan"),
    ("final_sparsity: .inf\n", "parameter 'final_sparsity' is inf")])
def test_hostile_parameter_files_are_refused_with_one_line(tmp_path, text, message):
    (tmp_path / "params" / "dynamic_pruning").mkdir(parents=True)
    (tmp_path / "params" / "profiles").mkdir()
    (tmp_path / "params" / "profiles" / "paper.yaml").write_text("")
    path = tmp_path / "params" / "dynamic_pruning" / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        resolve(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_parameter_file_outside_params_uses_the_projects_profiles(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text((PROJECT / "params/dynamic_pruning/cifar10_val.yaml").read_text())
    cfg = resolve(path, "quick")
    assert cfg.name == "mine" and cfg.width == 0.125 and cfg.epochs == 3  # the quick profile's defaults


def test_descriptive_fields_are_not_part_of_a_runs_identity():
    from dynprune.runs.identity import identity, key
    a = build(dict(epochs=3))
    assert key(identity(a)) == key(identity(a.replace(name="other", description="x", data_root="/elsewhere",
                                                      download=False)))
    assert key(identity(a)) != key(identity(a.replace(lr=0.01)))
    assert key(identity(a)) != key(identity(a.replace(threads=1)))  # a CPU's numbers depend on its threads
