"""Leave-one-system-out evaluation of the miner: choice rule, grid, alias resolution."""

from __future__ import annotations

from categorisation.config import MinerConfig
from categorisation.miner import TemplateMiner
from evaluation import loghub


def test_each_fold_chooses_without_the_held_out_system() -> None:
    scores = {"shipped": {"A": 0.9, "B": 0.9, "C": 0.1},
              "other": {"A": 1.0, "B": 0.8, "C": 1.0}}
    folds = {f.held_out: f for f in loghub.leave_one_out(scores)}
    # held out C: the others prefer "shipped" (0.9 vs 0.9 mean; tie -> better worst, 0.9)
    assert (folds["C"].config, folds["C"].ga) == ("shipped", 0.1)
    assert (folds["A"].config, folds["A"].ga) == ("other", 1.0)  # B, C: 0.9 vs 0.5


def test_ties_go_to_the_earlier_grid_point() -> None:
    scores = {"first": {"A": 0.5, "B": 0.5}, "second": {"A": 0.5, "B": 0.5}}
    assert {f.config for f in loghub.leave_one_out(scores)} == {"first"}


def test_grid_starts_with_the_shipped_configuration() -> None:
    label, cfg = loghub.grid_points()[0]
    assert cfg == MinerConfig()
    assert len(loghub.grid_points()) == 144 and "max_constant_values=4" in label


def test_tiebreak_system_only_breaks_ties_and_gets_its_own_fold() -> None:
    scores = {"a": {"A": 0.9, "B": 0.9, "demo": 0.1},
              "b": {"A": 0.9, "B": 0.9, "demo": 0.8},
              "c": {"A": 0.95, "B": 0.95, "demo": 0.0}}
    assert loghub.choose(scores, "demo") == "c"  # the mean decides
    assert loghub.choose({k: v for k, v in scores.items() if k != "c"}, "demo") == "b"
    folds = {f.held_out: f for f in loghub.leave_one_out(scores, "demo")}
    assert folds["demo"].config == "c" and folds["demo"].ga == 0.0


def test_mine_scores_lines_by_their_final_template() -> None:
    lines = [f"user {u} logged in" for u in ("ann", "bob", "cid", "dan", "eve")]
    pred = loghub.mine(lines, TemplateMiner("x", MinerConfig(value_vocabulary=False)))
    assert {v for v in pred.values()} == {(pred[1][0], "user <*> logged in")}
