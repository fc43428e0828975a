"""Merge features and policy: word sets for similarity, families, radii and windows."""

from __future__ import annotations

import pytest

from classifiers.merge import MAX_TOKENS, MergePolicy, jaccard, merge_score, merge_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The street is FLOODED near the school!", ("street", "flooded", "school")),
        ("<b>Flooded</b> street, flooded again", ("flooded", "street", "again")),
        ("路面积水", ("路面", "面积", "积水")),  # no spaces: character bigrams
        ("12 34 a", ()),  # digits and one-letter words carry nothing
        ("Straße überflutet bij de brug", ("strasse", "überflutet", "bij", "brug")),  # non-ASCII words stay whole
        ("路灯坏了 streetlight broken", ("路灯", "灯坏", "坏了", "streetlight", "broken")),  # words after a CJK run
        ("pothole on A4 road", ("pothole", "a4", "road")),  # two characters are a word
    ],
)
def test_merge_tokens(text, expected):
    assert merge_tokens(text) == expected


def test_merge_tokens_are_bounded():
    assert len(merge_tokens(" ".join(f"word{i}x" for i in range(100)))) == MAX_TOKENS


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(("x", "y"), ("y", "z"), 1 / 3), ((), (), 0.0), (("x",), ("x",), 1.0), (("x",), (), 0.0)],
)
def test_jaccard(a, b, expected):
    assert jaccard(a, b) == pytest.approx(expected)


def test_nearer_and_more_similar_scores_lower():
    """Distance counts in radii, dissimilarity in half a radius by default."""
    assert merge_score(30, 150, 1.0, 0.5) < merge_score(30, 150, 0.0, 0.5) < merge_score(120, 150, 0.0, 0.5)
    assert merge_score(80, 150, 1.0, 0.5) < merge_score(20, 150, 0.0, 0.5)  # same words outweigh 60 m
    # the figures the Lua in the store must agree with: 0 for the same words on the spot, 1 at the radius
    assert (merge_score(0, 150, 1.0, 0.5), merge_score(150, 150, 1.0, 0.5), merge_score(0, 150, 0.0, 0.5)) == (
        0.0,
        1.0,
        0.5,
    )


def test_policy_families_and_overrides():
    policy = MergePolicy(families={"blocked_drain": "water", "flooding": "water"}, radii_m={"water": 300.0})
    assert policy.rule_for("flooding") == policy.rule_for("blocked_drain")
    assert policy.rule_for("flooding").radius_m == 300.0
    assert policy.rule_for("pothole").family == "pothole"
    assert policy.rule_for("pothole").radius_m == 150.0 and policy.rule_for("pothole").window_s == 3 * 3600


@pytest.mark.parametrize("kwargs", [{"default_radius_m": 0}, {"default_window_s": -1}, {"text_weight": 11}])
def test_policy_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        MergePolicy(**kwargs)
