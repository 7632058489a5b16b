"""params/claims.yaml: research content as data, checked as strictly as a parameter file."""
import shutil

import pytest

from dynprune.config import ConfigError
from dynprune.config.claims_file import read_claims

from conftest import PROJECT


@pytest.fixture
def params(tmp_path):
    shutil.copytree(PROJECT / "params", tmp_path / "params")
    return tmp_path / "params"


def refused(params, old: str, new: str, *words):
    path = params / "claims.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        read_claims(params)
    message = str(error.value)
    assert "\n" not in message and "claims.yaml" in message, message
    for word in words:
        assert word in message, message


def test_the_projects_claims_file_reads_and_names_only_existing_experiments():
    claims = read_claims(PROJECT / "params")
    assert {"seed", "later_paper", "frankle_carbin_2019"} <= set(claims.publications)
    for claim in claims.claims:
        for key in claim.experiments():
            assert (PROJECT / "params" / f"{key}.yaml").is_file(), key
    assert claims.accuracy_claims("dynamic_pruning/lenet_s98")[0].fields["accuracy"] == 98.35


def test_a_claim_naming_a_missing_experiment_is_one_line(params):
    refused(params, "experiment: dynamic_pruning/lenet_s98,", "experiment: dynamic_pruning/lenet_s99,",
            "dynamic_pruning/lenet_s99", "no parameter file")


def test_a_figure_drawing_a_missing_parameter_file_is_one_line(params):
    claims = params / "claims.yaml"
    claims.write_text(claims.read_text().replace("    - dynamic_pruning/lenet_s98\n",
                                                 "    - dynamic_pruning/lenet_s98\n    - dynamic_pruning/lenet_gone\n"))
    with pytest.raises(ConfigError) as error:
        read_claims(params)
    assert "figures.sparsity" in str(error.value) and "lenet_gone" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("old, new, words", [
    ("source: later_paper, experiment: dynamic_pruning/lenet_s98", "source: nobody, experiment: dynamic_pruning/lenet_s98",
     ["nobody", "publications"]),
    ("accuracy: 98.35", "accuracy: 198.35", ["accuracy", "0-100"]),
    ("    expect: higher\n", "    expect: better\n", ["better", "higher"]),
    ("    remaining: 0.211\n", "    remaining: 2\n", ["remaining"]),
    ("kind: winning_ticket", "kind: guess", ["guess", "allowed"]),
    ("figures:\n", "figures:\n  pie: [dynamic_pruning/lenet_s98]\n", ["pie"]),
])
def test_bad_entries_are_one_line(params, old, new, words):
    refused(params, old, new, *words)


def test_a_project_without_a_claims_file_claims_nothing(tmp_path):
    (tmp_path / "params").mkdir()
    assert read_claims(tmp_path / "params").claims == []
