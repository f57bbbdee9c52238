"""The reflection rounds' loop on its own, with looks and redraws written out by hand."""

import torch

from reasoner.engine.guidance import SpecialTokens, unconditional_ids, unconditional_tensor
from reasoner.records import Plan, Reflection
from reasoner.reflection_loop import last_picture, run_reflection_rounds


def test_each_chain_ends_at_a_right_picture_or_after_the_rounds():
    # picture i is right once it has been redrawn `wrong_until[i]` times
    wrong_until = [0, 1, 5]
    redrawn = [0, 0, 0]
    looked: list[tuple[int, int, str]] = []

    def look(rows, plans, pictures, round_number):
        looked.extend((i, round_number, pictures[i]) for i in rows)
        return [
            Reflection("right", None) if redrawn[i] >= wrong_until[i] else Reflection("wrong. Plan: x", Plan("Plan: x"))
            for i in rows
        ]

    def redraw(rows, reflections, plans, round_number):
        assert all(r.needs_revision for r in reflections)
        for i in rows:
            redrawn[i] += 1
        return [(plans[i] + "+", f"p{i}" + "'" * redrawn[i]) for i in rows]

    chains = run_reflection_rounds(["a", "b", "c"], ["p0", "p1", "p2"], 3, look, redraw)
    assert [len(chain) for chain in chains] == [1, 2, 3]
    assert chains[0][0].redrawn is None and chains[0][0].reflection.text == "right"
    assert [look_.plan for look_ in chains[1]] == ["b+", None]
    assert all(look_.redrawn is not None for look_ in chains[2])  # still wrong when the rounds ran out
    # round r looks only at what round r-1 redrew, at that redraw
    assert looked == [(0, 1, "p0"), (1, 1, "p1"), (2, 1, "p2"), (1, 2, "p1'"), (2, 2, "p2'"), (2, 3, "p2''")]
    assert [last_picture(first, chain) for first, chain in zip(["p0", "p1", "p2"], chains)] == ["p0", "p1'", "p2'''"]


def test_the_drop_rule_is_one_rule_on_lists_and_tensors():
    special = SpecialTokens(bos=1, boi=4, pad=0)
    contexts = [[1, 7, 8, 9, 4], [1, 4, 5, 6, 4]]
    assert unconditional_ids(contexts[0], special) == [1, 0, 0, 0, 4]
    assert unconditional_tensor(torch.tensor(contexts), special).tolist() == [
        unconditional_ids(c, special) for c in contexts
    ]
