"""Synthetic labelled log sets: seeded, labelled, and mined well enough to be a check."""

from __future__ import annotations

from categorisation.miner import TemplateMiner
from evaluation import loghub, synthetic
from evaluation.template_counts import grouping_accuracy


def test_sets_repeat_per_seed_and_label_every_line() -> None:
    a, b = synthetic.generate(4, n_lines=500), synthetic.generate(4, n_lines=500)
    assert a == b and a != synthetic.generate(5, n_lines=500)
    assert sorted(a.truth) == list(range(1, 501))
    assert all("{" not in t for t, _ in a.truth.values())


def test_miner_groups_a_synthetic_set_mostly_right() -> None:
    s = synthetic.generate(3, n_lines=3000)
    pred = loghub.mine(s.contents, TemplateMiner("syn"))
    truth = {i: t for i, (t, _) in s.truth.items()}
    pairs = [(truth[i], pred[i][0]) for i in truth]
    assert grouping_accuracy(pairs) >= 0.8
