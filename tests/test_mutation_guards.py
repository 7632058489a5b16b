"""Tests written to kill the mutants `make mutate` found alive (tests/mutation/): each asserts against an
independent oracle (a hand computation, a published table), never against the code under test."""
import dataclasses
import hashlib
import inspect
import json
import math
import os
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import dynprune
from dynprune.analysis import stats
from dynprune.config import Config, ConfigError, build
from dynprune.core import masks as masks_mod
from dynprune.core import schedules, threshold
from dynprune.foundations import storage
from dynprune.runs import identity


def test_t_quantile_with_two_and_four_degrees_of_freedom_is_the_published_value():
    # t(0.975, 2) = 4.303, t(0.975, 4) = 2.776 (NIST/SEMATECH e-Handbook 1.3.6.7.2)
    assert stats.t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert math.isclose(stats.t_cdf(0.0, 3), 0.5)


# -- statistics (dynprune/analysis/stats.py) ---------------------------------------------------------------

def cdf_cauchy(t):   # Student t with 1 degree of freedom, closed form
    return 0.5 + math.atan(t) / math.pi


def cdf_t2(t):       # Student t with 2 degrees of freedom, closed form
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


@pytest.mark.parametrize("t", [-3.0, -1.0, -0.3, 0.0, 0.2, 0.5, 0.9, 1.0, 1.1, 2.0, 7.0])
def test_the_t_distribution_function_is_the_closed_form_for_one_and_two_degrees_of_freedom(t):
    """Near t = 0 the incomplete beta takes its other continued fraction (x above (a+1)/(a+b+2))."""
    assert stats.t_cdf(t, 1) == pytest.approx(cdf_cauchy(t), abs=1e-10)
    assert stats.t_cdf(t, 2) == pytest.approx(cdf_t2(t), abs=1e-10)


@pytest.mark.parametrize("p", [0.55, 0.6, 0.75, 0.9])
def test_central_t_quantiles_are_the_closed_form(p):
    # inverses of the closed forms above: Cauchy tan(pi (p - 1/2)); df 2: (2p - 1) sqrt(2 / (4 p (1 - p)))
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), abs=1e-9)
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), abs=1e-9)


def test_the_incomplete_beta_function_at_its_ends_and_in_closed_form():
    assert stats._betainc(2.0, 3.0, 0.0) == 0.0 and stats._betainc(2.0, 3.0, 1.0) == 1.0
    # I_x(1, b) = 1 - (1 - x)^b and I_x(a, 1) = x^a, on both sides of (a + 1) / (a + b + 2)
    for x in (0.1, 0.4, 0.7, 0.95):
        assert stats._betainc(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, abs=1e-12)
        assert stats._betainc(2.5, 1.0, x) == pytest.approx(x ** 2.5, abs=1e-12)


def test_two_values_have_an_interval_from_one_degree_of_freedom():
    # 1 and 3: mean 2, sd sqrt(2), half-width t(0.975, 1) * sqrt(2) / sqrt(2) = 12.7062 (t table, df 1)
    s = stats.summarize([1.0, 3.0])
    assert s.sd == pytest.approx(math.sqrt(2)) and s.n == 2
    assert s.low == pytest.approx(2 - 12.7062, abs=1e-4) and s.high == pytest.approx(2 + 12.7062, abs=1e-4)
    assert s.text() == "2.00 ± 1.41 (n=2, 95 % CI -10.71–14.71)"


def test_welch_with_variances_other_than_one_worked_by_hand():
    """a = 1, 3, 5 (variance 4), b = 2, 4, 6, 8 (variance 20/3): va = 4/3, vb = 5/3, se = sqrt(3);
    df = 3^2 / ((4/3)^2 / 2 + (5/3)^2 / 3) = 9 / (8/9 + 25/27) = 243/49 = 4.959."""
    d = stats.welch([1, 3, 5], [2, 4, 6, 8])
    assert d.diff == -2 and d.df == pytest.approx(243 / 49, rel=1e-12)
    half = (d.high - d.low) / 2
    assert d.low + half == pytest.approx(-2)
    # t(0.975, df) lies between the table's 2.571 (df 5) and 2.776 (df 4)
    assert 2.571 * math.sqrt(3) < half < 2.776 * math.sqrt(3)


def test_welch_without_spread_and_with_one_value():
    d = stats.welch([2.0, 2.0], [1.0, 1.0, 1.0])
    assert (d.diff, d.low, d.high, d.df) == (1.0, 1.0, 1.0, 3.0)  # no spread: the interval is the difference
    one = stats.welch([4.0], [1.0, 2.0])
    assert (one.diff, one.low, one.high, one.df) == (2.5, None, None, None)


# -- schedules (dynprune/core/schedules.py) ----------------------------------------------------------------

def test_a_schedule_whose_start_is_its_end_steps_at_that_epoch():
    for schedule in (schedules.linear_sparsity, schedules.cubic_sparsity):
        assert schedule(2.99, 0.9, 3, 3) == 0.0
        assert schedule(3.0, 0.9, 3, 3) == 0.9   # at the start of epoch 3, not one epoch late
        assert schedule(7.0, 0.9, 3, 3) == 0.9


def test_the_papers_linear_schedule_is_dense_before_its_start():
    # S_e = S (e + 1) / P from epoch `start` on: epoch 1.5 < start 2 is dense; epoch 2 is S / P = 0.9 / 3
    assert schedules.linear_paper_sparsity(1.5, 0.9, 2, 5) == 0.0
    assert schedules.linear_paper_sparsity(2.0, 0.9, 2, 5) == pytest.approx(0.3)


def test_the_adaptive_gate_counts_losses_from_its_first_step():
    gate = schedules.AdaptiveSchedule(max_wait=2, device=torch.device("cpu"))
    gate.observe_loss(torch.tensor(3.0))
    gate.observe_loss(torch.tensor(1.0))
    assert gate.loss_steps == 2 and float(gate.loss_sum) == 4.0


def test_the_adaptive_gate_keeps_its_masks_when_the_target_equals_them():
    gate = schedules.AdaptiveSchedule(max_wait=2, device=torch.device("cpu"))
    gate.observe_loss(torch.tensor(1.0))
    assert gate.decide(0.5, 0.5, 0.9) == (0.5, "scheduled", 1.0)
    assert gate.reference is None  # nothing was pruned: no reference level yet
    gate.observe_loss(torch.tensor(2.0))
    assert gate.decide(0.6, 0.5, 0.9) == (0.6, "scheduled", 2.0) and gate.reference == 2.0
    gate.observe_loss(torch.tensor(3.0))  # worse than 2.0, but nothing new to prune: no wait is counted
    assert gate.decide(0.6, 0.6, 0.9) == (0.6, "scheduled", 3.0) and gate.waited == 0


def test_the_adaptive_gates_state_round_trips_by_name():
    gate = schedules.AdaptiveSchedule(max_wait=3, device=torch.device("cpu"))
    gate.observe_loss(torch.tensor(2.0))
    gate.decide(0.3, 0.0, 0.9)                 # first pruning step: reference 2.0
    gate.observe_loss(torch.tensor(4.0))
    gate.decide(0.4, 0.3, 0.9)                 # 4.0 > 2.0: waiting, waited 1
    gate.observe_loss(torch.tensor(1.5))
    gate.observe_loss(torch.tensor(2.5))       # mid-window: sum 4.0 over 2 steps
    state = gate.state_dict()
    assert set(state) == {"reference", "waited", "loss_sum", "loss_steps"}
    assert (state["reference"], state["waited"], float(state["loss_sum"]), state["loss_steps"]) == (2.0, 1, 4.0, 2)
    restored = schedules.AdaptiveSchedule(max_wait=3, device=torch.device("cpu"))
    restored.load_state_dict({"reference": 2.0, "waited": 1, "loss_sum": torch.tensor(4.0), "loss_steps": 2})
    assert (restored.reference, restored.waited, float(restored.loss_sum), restored.loss_steps) == (2.0, 1, 4.0, 2)
    assert restored.decide(0.5, 0.3, 0.9) == (0.5, "recovered", 2.0)  # level 4.0 / 2 = 2.0 <= reference 2.0


# -- identity (dynprune/runs/identity.py) -----------------------------------------------------------------

def test_code_text_drops_docstrings_and_comments_only():
    source = '"""module doc"""\n# a comment\nclass A:\n    """class doc"""\n    x = 1\n\ndef f():\n    """only a doc"""\n\nasync def g():\n    """doc"""\n    return "kept"\n'
    assert identity.code_text(source) == "class A:\n    x = 1\n\ndef f():\n    pass\n\nasync def g():\n    return 'kept'"
    assert identity.code_text('"""only a docstring"""\n') == ""
    assert identity.code_text('x = 1\n"not a docstring"\n') == "x = 1\n'not a docstring'"


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_code_fingerprint_follows_code_names_and_new_modules_but_not_docstrings(tmp_path):
    write(tmp_path, "core/__init__.py", "")
    write(tmp_path, "core/a.py", "x = 1\n")
    write(tmp_path, "lottery/b.py", "y = 2\n")
    write(tmp_path, "other/c.py", "z = 3\n")
    base = identity.code_fingerprint(("core", "lottery"), tmp_path)
    assert len(base) == 16 and int(base, 16) >= 0
    assert identity.code_fingerprint(("core", "lottery"), tmp_path) == base
    write(tmp_path, "other/c.py", "z = 4\n")                       # outside the parts: no change
    write(tmp_path, "core/a.py", '"""doc"""\n# note\nx = 1\n')     # docstring and comment: no change
    write(tmp_path, "core/empty.py", "# nothing\n")                # a module without code: no change
    assert identity.code_fingerprint(("core", "lottery"), tmp_path) == base
    changed = {}
    write(tmp_path, "lottery/b.py", "y = 3\n")
    changed["lottery code"] = identity.code_fingerprint(("core", "lottery"), tmp_path)
    write(tmp_path, "lottery/b.py", "y = 2\n")
    write(tmp_path, "core/deep/n.py", "w = 0\n")                   # a new module, nested
    changed["new module"] = identity.code_fingerprint(("core", "lottery"), tmp_path)
    (tmp_path / "core/deep/n.py").unlink()
    (tmp_path / "core/a.py").rename(tmp_path / "core/a2.py")       # same code, other name
    changed["renamed"] = identity.code_fingerprint(("core", "lottery"), tmp_path)
    assert all(v != base for v in changed.values()), changed
    assert len(set(changed.values())) == 3
    # a single module as a part: the same as its folder holding only it
    assert identity.code_fingerprint(("lottery/b.py",), tmp_path) == identity.code_fingerprint(("lottery",), tmp_path)


def test_the_training_code_is_core_and_lottery():
    assert identity.TRAINING_CODE == ("core", "lottery")
    assert identity.PACKAGE == Path(dynprune.__file__).resolve().parent


def test_a_key_is_sixteen_hex_digits_independent_of_key_order():
    a = identity.key({"params": {"x": 1, "y": 2}, "code": "c", "inputs": {}})
    b = identity.key({"inputs": {}, "code": "c", "params": {"y": 2, "x": 1}})
    assert a == b and len(a) == 16 and int(a, 16) >= 0
    assert identity.key({"params": {"x": 2, "y": 2}, "code": "c", "inputs": {}}) != a


def test_differences_name_what_changed():
    new = {"params": {"lr": 0.1, "epochs": 3}, "code": "c1", "inputs": {"data": "d"}}
    assert identity.differences(None, new) == ["everything (no identity recorded)"]
    assert identity.differences(dict(new), new) == []
    old = {"params": {"lr": 0.2, "epochs": 3, "gone": 1}, "code": "c0", "inputs": {"data": "e"}}
    assert identity.differences(old, new) == ["code", "inputs", "gone", "lr"]
    assert identity.differences({"code": "c1", "inputs": {"data": "d"}}, new) == ["epochs", "lr"]


# -- exact selection (dynprune/core/threshold.py) ---------------------------------------------------------

def test_layerwise_selection_ranks_signed_scores_unless_told_absolute():
    scores = [torch.tensor([-5.0, 1.0, 2.0, 3.0]), torch.tensor([[4.0, -0.5], [0.1, -9.0]])]
    masks = [torch.ones(4), torch.ones(2, 2)]
    # 25 % of each tensor: signed, the lowest (-5; -9) goes; absolute, the smallest magnitude (1; 0.1) goes
    signed = threshold.layerwise_score_masks(scores, masks, 0.25)
    assert [m.tolist() for m in signed] == [[False, True, True, True], [[True, True], [True, False]]]
    absolute = threshold.layerwise_score_masks(scores, masks, 0.25, absolute=True)
    assert [m.tolist() for m in absolute] == [[True, False, True, True], [[True, True], [False, True]]]


def test_a_one_weight_tensor_is_selected():
    assert threshold.global_score_masks([torch.tensor([3.0])], [torch.ones(1)], 0.0)[0].tolist() == [True]
    assert threshold.global_score_masks([torch.tensor([3.0])], [torch.ones(1)], 1.0)[0].tolist() == [False]


# -- storage (dynprune/foundations/storage.py) ------------------------------------------------------------

def test_mask_bits_are_packed_highest_bit_first():
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 1], dtype=torch.bool)
    packed = storage.pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.tolist() == [0b10110001, 0b10000000]  # 177, 128
    assert storage.unpack_bits(packed, [9]).tolist() == mask.tolist()
    assert storage.unpack_bits(packed, (3, 3)).tolist() == mask.view(3, 3).tolist()
    assert storage.unpack_bits(torch.tensor([255], dtype=torch.uint8), [8]).tolist() == [True] * 8
    with pytest.raises(storage.StoreError, match="cannot hold shape"):
        storage.unpack_bits(packed, [17])   # 2 bytes hold at most 16
    with pytest.raises(storage.StoreError, match="cannot hold shape"):
        storage.unpack_bits(packed, [8])    # 8 entries need 1 byte, not 2


def test_a_packed_state_keeps_only_the_surviving_values():
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    state = {"w": w, "b": torch.tensor([7.0, 8.0])}
    masks = {"w": torch.tensor([[1, 0, 1], [0, 1, 1]])}
    tensors, layout = storage.pack_state(state, masks, prefix="p/")
    assert set(tensors) == {"p/w:bits", "p/w:values", "p/b"}
    assert tensors["p/w:values"].tolist() == [1.0, 3.0, 5.0, 6.0]
    assert tensors["p/w:bits"].tolist() == [0b10101100]
    assert layout == {"w": {"shape": [2, 3], "dtype": "float32", "masked": True},
                      "b": {"shape": [2], "dtype": "float32", "masked": False}}
    back = storage.unpack_state(tensors, layout, prefix="p/")
    assert back["w"].tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]] and back["b"].tolist() == [7.0, 8.0]
    assert storage.masks_of(tensors, layout, prefix="p/")["w"].tolist() == [[True, False, True], [False, True, True]]
    assert list(storage.masks_of(tensors, layout, prefix="p/")) == ["w"]
    short = dict(tensors, **{"p/w:values": torch.tensor([1.0, 3.0, 5.0])})
    with pytest.raises(storage.StoreError, match="3 stored values for 4 kept weights"):
        storage.unpack_state(short, layout, prefix="p/")
    with pytest.raises(storage.StoreError, match=r"stored shape \[2\], expected \[3\]"):
        storage.unpack_state(tensors, dict(layout, b={"shape": [3], "dtype": "float32", "masked": False}), "p/")
    plain, plain_layout = storage.pack_state({"b": torch.tensor([7.0, 8.0])})
    assert set(plain) == {"b"} and plain_layout["b"]["masked"] is False


def test_a_file_round_trips_and_another_format_is_refused(tmp_path):
    path = tmp_path / "t.safetensors"
    storage.save(path, {"x": torch.tensor([1.0, 2.0])}, {"level": 3})
    tensors, meta = storage.load(path)
    assert tensors["x"].tolist() == [1.0, 2.0] and meta == {"format": 1, "level": 3}
    from safetensors.torch import save as to_bytes
    path.write_bytes(to_bytes({"x": torch.zeros(1)}, metadata={"dynprune": json.dumps({"format": 2})}))
    with pytest.raises(storage.StoreError, match="not a dynprune file of format 1"):
        storage.load(path)
    path.write_bytes(to_bytes({"x": torch.zeros(1)}))  # no dynprune metadata at all
    with pytest.raises(storage.StoreError, match="not a dynprune file"):
        storage.load(path)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(storage.StoreError, match="cannot be read as a dynprune file"):
        storage.load(path)


def test_an_atomic_write_leaves_the_old_file_or_the_new_one_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "summary.json"
    storage.write_atomic(path, "old")
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]
    leftover = path.with_name(f".summary.json.{os.getpid()}.tmp")
    leftover.write_text("leftover")
    storage.write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and not leftover.exists()

    def crash(*args):
        raise OSError("disk full")
    monkeypatch.setattr(storage.os, "fsync", crash)  # a crash mid-write, before the rename
    with pytest.raises(OSError, match="disk full"):
        storage.write_atomic(path, "half")
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_links_are_replaced_or_refused_never_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    base = tmp_path / "base"
    (base / "run").mkdir(parents=True)
    link = base / "run" / "summary.json"
    link.symlink_to(outside)
    storage.write_atomic(link, "mine")                       # the link is replaced
    assert outside.read_text() == "keep" and not link.is_symlink() and link.read_text() == "mine"
    log = base / "run" / "train.log"
    log.symlink_to(outside)
    with pytest.raises(storage.LinkError, match="train.log is a symbolic link"):
        storage.append_text(log, "x")
    assert outside.read_text() == "keep"
    real = base / "run" / "ok.log"
    storage.append_text(real, "a")
    storage.append_text(real, "b\n")
    assert real.read_text() == "ab\n"
    (base / "lnk").symlink_to(base / "run")
    with pytest.raises(storage.LinkError, match="lnk is a symbolic link"):
        storage.no_links(base / "lnk" / "x" / "f.txt", base)
    assert storage.no_links(base / "run" / "f.txt", base) == (base / "run" / "f.txt").absolute()
    assert storage.no_links(tmp_path / "elsewhere", base) == (tmp_path / "elsewhere").absolute()
    top = tmp_path / "top"
    top.symlink_to(base)                                    # a link at or above the base is the user's setup
    assert storage.no_links(top / "run" / "f.txt", top) == (top / "run" / "f.txt").absolute()


def test_a_held_lock_names_its_holder(tmp_path):
    lock = tmp_path / "run" / ".lock"
    with storage.locked(lock, "the run"):
        with pytest.raises(storage.Busy, match=rf"the run is in use by process {os.getpid()} on "):
            with storage.locked(lock, "the run"):
                pass
    with storage.locked(lock, "the run"):                   # released when the block ends
        pass


def test_a_stable_key_is_the_sha256_of_the_sorted_json():
    expected = hashlib.sha256(b'{"a": 1, "b": [2, 3]}').hexdigest()[:16]
    assert storage.stable_key({"b": [2, 3], "a": 1}) == expected


# -- masks (dynprune/core/masks.py) -----------------------------------------------------------------------

def tiny_net():
    """Linear 4 -> 3 with weights 1..12 (sign alternating), Linear 3 -> 2 with weights 0.5, 1.5, ..., 5.5."""
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        signs = torch.tensor([1.0, -1.0]).repeat(6)
        net[0].weight.copy_((torch.arange(1.0, 13.0) * signs).view(3, 4))
        net[2].weight.copy_((torch.arange(6.0) + 0.5).view(2, 3))
    return net


def test_prunable_weights_are_every_linear_and_conv_weight_minus_the_excluded():
    net = tiny_net()
    assert list(masks_mod.prunable_weights(net)) == ["0.weight", "2.weight"]
    assert list(masks_mod.prunable_weights(net, ("0.*",))) == ["2.weight"]
    assert list(masks_mod.prunable_weights(nn.Linear(2, 2))) == ["weight"]
    with pytest.raises(ConfigError, match="leaves no Conv2d/Linear weight"):
        masks_mod.Masks(net, ("*",))


def test_global_magnitude_pruning_zeroes_exactly_the_smallest_weights():
    net = tiny_net()
    m = masks_mod.Masks(net)
    assert (m.total, m.zeros(), m.pruned) == (18, 0, False)
    m.prune_to(0.5)  # 9 of 18: magnitudes 0.5..5.5 (layer 2) and 1..12: the nine smallest are 0.5, 1, 1.5, .., 4.5
    assert m.zeros() == 9 and m.sparsity() == 0.5 and m.pruned
    assert (net[2].weight == 0).tolist() == [[True, True, True], [True, True, False]]
    assert (net[0].weight == 0).flatten().tolist() == [True] * 4 + [False] * 8
    assert all(bool(((w == 0) == (k == 0)).all()) for w, k in zip(m.weights, m.masks))  # pruned means zero
    before = [k.clone() for k in m.masks]
    m.prune_to(0.25)  # never loosens: the same masks, entry by entry
    assert all(torch.equal(a, b) for a, b in zip(before, m.masks))
    assert m.layer_report() == [
        dict(layer="0.weight", shape=[3, 4], weights=12, zeros=4, sparsity=4 / 12),
        dict(layer="2.weight", shape=[2, 3], weights=6, zeros=5, sparsity=5 / 6)]
    assert m.densities() == pytest.approx({"0.weight": 8 / 12, "2.weight": 1 / 6})


def test_reached_counts_per_layer_when_layerwise():
    m = masks_mod.Masks(tiny_net(), scope="layerwise")
    m.masks[1][0, :] = 0  # 3 of the 6 zeros of layer 2, none in layer 1: global 3/18 reached, layer 1 not
    assert not m.reached(1 / 6)
    glob = masks_mod.Masks(tiny_net())
    glob.masks[1][0, :] = 0
    assert glob.reached(1 / 6) and not glob.reached(4 / 18)
    m.prune_to(0.5)  # layerwise: 6 of 12 and 3 of 6
    assert [int((k == 0).sum()) for k in m.masks] == [6, 3]


def test_layer_targets_prune_only_the_named_layer():
    net = tiny_net()
    m = masks_mod.Masks(net)
    m.prune_layers_to({"0.weight": 0.25})
    assert (net[0].weight == 0).flatten().tolist() == [True] * 3 + [False] * 9 and m.pruned
    assert int((m.masks[1] == 0).sum()) == 0 and bool((net[2].weight != 0).all())
    m.prune_layers_to({"0.weight": 0.25})   # already there: nothing changes
    assert int((m.masks[0] == 0).sum()) == 3


def test_masks_restored_from_a_state_are_enforced():
    net = tiny_net()
    m = masks_mod.Masks(net)
    state = {"0.weight": torch.ones(3, 4, dtype=torch.bool), "2.weight": torch.tensor([[0, 1, 1], [1, 1, 0]]).bool()}
    m.load_state_dict(state)
    assert m.pruned and net[2].weight.tolist() == [[0.0, 1.5, 2.5], [3.5, 4.5, 0.0]]
    assert m.state_dict()["2.weight"].tolist() == [[False, True, True], [True, True, False]]
    assert m.state_dict()["2.weight"].dtype == torch.bool
    dense = masks_mod.Masks(tiny_net())
    dense.load_state_dict({"0.weight": torch.ones(3, 4, dtype=torch.bool), "2.weight": torch.ones(2, 3, dtype=torch.bool)})
    assert not dense.pruned
    with pytest.raises(ValueError, match="mask names do not match"):
        m.load_state_dict({"2.weight": state["2.weight"], "0.weight": state["0.weight"]})


def test_set_replaces_the_masks_and_zeroes_what_they_drop():
    net = tiny_net()
    m = masks_mod.Masks(net)
    m.set_([torch.zeros(3, 4, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)])
    assert m.pruned and bool((net[0].weight == 0).all()) and bool((net[2].weight != 0).all())


def test_a_difference_reads_with_its_sign_and_interval():
    assert stats.welch([2.0, 2.0], [1.0, 1.0, 1.0]).text() == "+1.00 (95 % CI +1.00 to +1.00)"
    assert stats.welch([4.0], [1.0, 2.0]).text(1) == "+2.5 (no interval: n < 2)"
    assert stats.Difference(-0.5, -1.25, 0.25, 3.0).text() == "-0.50 (95 % CI -1.25 to +0.25)"


# -- make mutate itself (tests/mutation/mutate.py) --------------------------------------------------------

def test_make_mutate_takes_only_a_mapped_module_under_dynprune():
    import importlib.util
    spec = importlib.util.spec_from_file_location("mutate_driver", Path(__file__).parent / "mutation" / "mutate.py")
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    targets = driver.targets()
    assert driver.chosen(targets, "dynprune/analysis/stats.py") == ["dynprune/analysis/stats.py"]
    assert driver.chosen(targets, "") == list(targets)
    for bad in ("x; rm -rf /", "../etc/passwd", "dynprune/../README.md", "dynprune/core/models.py"):
        with pytest.raises(SystemExit):
            driver.chosen(targets, bad)
    assert all(module.startswith("dynprune/") and all(Path(t).is_file() for t in tests)
               for module, tests in ((m, [str(Path(__file__).parents[1] / t) for t in ts]) for m, ts in targets.items()))
    assert all(" " in line.strip() for line in driver.EQUIVALENTS.read_text().splitlines()
               if line.strip() and not line.startswith("#"))  # every equivalent mutant has a reason


def test_one_thread_for_cpu_work_only_and_restored_after():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threshold.OneThread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threshold.OneThread(torch.device("meta")):   # not CPU work: threads untouched
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_fingerprint_is_the_sha256_of_each_modules_name_and_code_nul_separated(tmp_path):
    """Pinned by hand: a change of this format makes every finished run stale, so it must be deliberate."""
    write(tmp_path, "core/a.py", '"""doc"""\nx = 1\n')
    write(tmp_path, "core/b.py", "y = 2  # note\n")
    expected = hashlib.sha256(b"core/a.py\x00x = 1\x00core/b.py\x00y = 2\x00").hexdigest()[:16]
    assert identity.code_fingerprint(("core",), tmp_path) == expected


def test_config_defaults_are_sorted_json_then_the_two_rules():
    text = identity.config_defaults()
    (defaults, auto_init), end = json.JSONDecoder().raw_decode(text)
    names = {f.name for f in dataclasses.fields(Config)}
    assert set(defaults) == names and list(defaults) == sorted(defaults)   # every default, keys sorted
    assert list(auto_init) == sorted(auto_init) and auto_init
    assert text[:end] == json.dumps([defaults, auto_init], sort_keys=True)
    rules = text[end:]
    prune_end = identity.code_text(textwrap.dedent(inspect.getsource(Config.prune_end.fget)))
    init = identity.code_text(textwrap.dedent(inspect.getsource(Config.initialisation.fget)))
    assert rules == prune_end + init and "def prune_end" in prune_end and "def initialisation" in init


def test_a_runs_identity_is_its_parameters_minus_the_descriptive_ones_its_code_and_inputs():
    cfg = build({"name": "a", "description": "words", "dataset": "mnist", "model": "lenet_300_100"})
    ident = identity.identity(cfg, {"data": "abc"})
    assert set(ident) == {"params", "code", "inputs"}
    assert ident["inputs"] == {"data": "abc"} and ident["code"] == identity.training_code()
    assert set(ident["params"]) == set(cfg.to_dict()) - {"name", "description", "data_root", "download"}
    assert ident["params"]["dataset"] == "mnist" and ident["params"]["model"] == "lenet_300_100"
    assert identity.identity(cfg)["inputs"] == {}
    other = build({"name": "b", "description": "other words", "dataset": "mnist", "model": "lenet_300_100"})
    assert identity.key(identity.identity(other)) == identity.key(identity.identity(cfg))


def test_files_are_created_readable_by_all_writable_by_their_owner(tmp_path):
    umask = os.umask(0o022)
    try:
        storage.append_text(tmp_path / "a.log", "x")
        storage.write_atomic(tmp_path / "b.json", "{}")
    finally:
        os.umask(umask)
    assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("a.log", "b.json")] == [0o644, 0o644]


def test_a_write_that_fails_before_its_temporary_exists_reports_its_own_error(tmp_path, monkeypatch):
    def no_space(*args):
        raise OSError("no space left on device")
    monkeypatch.setattr(storage, "_open", no_space)
    with pytest.raises(OSError, match="no space left on device"):
        storage.write_atomic(tmp_path / "summary.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_state_without_prefix_keeps_its_dtype():
    w = torch.tensor([[1.5, 2.5], [3.5, 4.5]], dtype=torch.float64)
    tensors, layout = storage.pack_state({"w": w}, {"w": torch.tensor([[1, 0], [0, 1]])})
    assert set(tensors) == {"w:bits", "w:values"} and layout["w"]["dtype"] == "float64"
    back = storage.unpack_state(tensors, layout)
    assert back["w"].dtype == torch.float64 and back["w"].tolist() == [[1.5, 0.0], [0.0, 4.5]]
    assert storage.masks_of(tensors, layout)["w"].tolist() == [[True, False], [False, True]]


def test_metadata_that_is_not_strict_json_is_refused_and_a_damaged_file_named(tmp_path):
    with pytest.raises(ValueError):
        storage.save(tmp_path / "x.safetensors", {"x": torch.zeros(1)}, {"loss": float("nan")})
    assert not (tmp_path / "x.safetensors").exists()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(storage.StoreError, match=r"cannot be read as a dynprune file \(SafetensorError\)"):
        storage.load(bad)


def test_layerwise_reached_at_exactly_the_count_of_every_layer():
    m = masks_mod.Masks(tiny_net(), scope="layerwise")
    m.masks[0].view(-1)[:3] = 0   # 3 of 12 = round(0.25 * 12)
    m.masks[1].view(-1)[:2] = 0   # 2 of 6 = round(0.25 * 6 = 1.5)
    assert m.reached(0.25) and not m.reached(0.3)  # 0.3: round(3.6) = 4 zeros in layer 1


def test_restoring_masks_of_other_weights_is_refused_in_one_line():
    m = masks_mod.Masks(tiny_net())
    with pytest.raises(ValueError, match=r"^mask names do not match the model's prunable weights$"):
        m.load_state_dict({"2.weight": torch.ones(2, 3), "0.weight": torch.ones(3, 4)})


def test_random_scores_are_the_generators_draws_in_weight_order():
    weights = [torch.zeros(3, 4), torch.zeros(2, 3)]
    scores = masks_mod.random_scores(weights, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    expected = [torch.rand(3, 4, generator=g), torch.rand(2, 3, generator=g)]
    assert all(torch.equal(s, e) for s, e in zip(scores, expected))


def test_snip_saliency_worked_by_hand():
    """w = (2, -3), x = (1, 1), y = 0, loss (w.x - y)^2: w.x = -1, dL/dw = 2 (w.x) x = (-2, -2), |g w| = (4, 6);
    averaged means summed here over the batches used: two batches give (8, 12), the third is not read."""
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[2.0, -3.0]]))
    batch = (torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0]]))
    other = (torch.tensor([[5.0, 5.0]]), torch.tensor([[0.0]]))
    loss = nn.MSELoss()
    one = masks_mod.snip_scores(net, [net.weight], [batch, other], loss, 1)
    assert one[0].tolist() == [[4.0, 6.0]]
    two = masks_mod.snip_scores(net, [net.weight], [batch, batch, other], loss, 2)
    assert two[0].tolist() == [[8.0, 12.0]] and net.weight.grad is None


def test_a_network_with_nothing_left_to_prune_is_refused_before_training():
    masks_mod.check_prunable(build({"dataset": "mnist", "model": "lenet_300_100"}))
    with pytest.raises(ConfigError, match="leaves no Conv2d/Linear weight"):
        masks_mod.check_prunable(build({"dataset": "mnist", "model": "lenet_300_100", "prune_exclude": ["*"]}))


def test_the_image_side_a_network_is_checked_against_is_the_resized_one_when_resize_is_set():
    with pytest.raises(ConfigError, match="multiple of 32, got 28; set resize: 32"):  # MNIST's own side
        masks_mod.check_prunable(build({"dataset": "mnist", "model": "vgg19"}))
    masks_mod.check_prunable(build({"dataset": "mnist", "model": "vgg19", "resize": 32}))  # no error
