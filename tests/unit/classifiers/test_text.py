"""The seed text model: normalisation and sensible first answers in several languages."""

from __future__ import annotations

import pytest

from classifiers import TextClassifier, normalise_text, seed_classifier
from classifiers.text import seed_corpus


def test_normalise_strips_html_and_folds_width_and_case():
    assert normalise_text("<p>Big&nbsp;POTHOLE</p>\n\n here") == "big pothole here"
    assert normalise_text("ＰＯＴＨＯＬＥ") == "pothole"  # full-width forms


def test_seed_corpus_covers_every_demo_category():
    from dispatch.demo_city import CATEGORIES

    _, labels = seed_corpus()
    assert set(labels) == {c["code"] for c in CATEGORIES}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("there is a big hole in the road", "pothole"),
        ("street lamp broken, very dark at night", "streetlight"),
        ("the road is flooded after heavy rain", "flooding"),
        ("someone dumped an old sofa on the verge", "illegal_dumping"),
        ("路灯坏了晚上很黑", "streetlight"),
        ("árbol caído en la calle", "fallen_tree"),
        ("Ржавый брошенный фургон во дворе уже полгода", "abandoned_vehicle"),
    ],
)
def test_seed_model_recognises_unseen_phrasings(text, category):
    """Texts not in the corpus, in four languages, get the right category on top."""
    result = seed_classifier().predict([text])[0]
    assert result.category == category
    assert result.top[0] == (result.category, result.confidence)
    assert len(result.top) == 3 and result.top[0][1] >= result.top[1][1] >= result.top[2][1]


def test_training_needs_two_categories():
    with pytest.raises(ValueError):
        TextClassifier.train(["a", "b"], ["x", "x"])


def test_empty_batch():
    assert seed_classifier().predict([]) == []
