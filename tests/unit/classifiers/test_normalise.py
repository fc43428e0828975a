"""Text normalisation: one form per text, whatever markup, width, case or spacing it came with."""

from __future__ import annotations

import pytest

from classifiers import normalise_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<div><b>Water</b> everywhere</div>", "water everywhere"),
        ("fish &amp; chips &lt;3", "fish & chips <3"),
        ("tab\there\r\nnew  line", "tab here new line"),
        ("ＬＩＧＨＴ　ＯＵＴ", "light out"),  # full-width letters and the ideographic space
        ("ＳＴＲＡẞＥ", "strasse"),  # casefold, not lower: the capital sharp s folds to ss
        ("ЯМА НА ДОРОГЕ", "яма на дороге"),
        ("路灯 不亮", "路灯 不亮"),  # Chinese is left as it is
        ("cafe\u0301", "café"),  # a combining accent composes
        ("   ", ""),
        ("труба.\\nМы боимся\\r\\nчто", "труба. мы боимся что"),  # line breaks an export wrote as \\n
        ("дом&amp;nbsp;12 &amp;laquo;А&amp;raquo;", "дом 12 «а»"),  # entities escaped twice
        ("pot\u200bhole\ufffcnear\u00adby", "pot hole near by"),  # zero-width, object and soft-hyphen marks
    ],
)
def test_normalise_text(raw, expected):
    """HTML tags go, entities are decoded, width and case are folded, white space is one space."""
    assert normalise_text(raw) == expected


def test_normalise_is_idempotent():
    """Normalising twice changes nothing more."""
    once = normalise_text("<p>Ｂig&nbsp;HOLE\n</p>")
    assert normalise_text(once) == once
