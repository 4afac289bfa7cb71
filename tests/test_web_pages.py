"""The pages as files: every word comes from the catalogues, both languages say everything, and
nothing points to another host. The browser tests (test_web_client.py) check what they do."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from signaling.app import DOCUMENTS, PAGES

from .conftest import RunningServer

STATIC = Path(__file__).resolve().parent.parent / "web_client" / "static"
HTML = sorted((STATIC / "pages").glob("*.html"))
SCRIPTS = sorted((STATIC / "js").rglob("*.js"))
# A catalogue key written out in a script: i18n: "room.chat", label(x, "…"), t("…"), …
KEY_LITERAL = r"""(?:i18n: |label\([^,]+, |\bt\(|confirmDialog\(|action\()"([a-z_]+\.[a-z_.]+)"""


def catalogue(language: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((STATIC / "i18n" / f"{language}.json").read_text(encoding="utf-8"))
    return data


def shape(value: Any) -> Any:
    """The structure of an entry without its words: lists and objects must match across languages."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def placeholders(value: Any) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", json.dumps(value, ensure_ascii=False)))


class Markup(HTMLParser):
    """Collects the text of a page (outside scripts) and its keys and addresses."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.keys: set[str] = set()
        self.addresses: list[str] = []
        self.ids: list[str] = []
        self.labelled: set[str] = set()
        self.fields: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "style"):
            self._skip += 1
        if "data-i18n" in a:
            self.keys.add(a["data-i18n"])
        for pair in filter(None, a.get("data-i18n-attr", "").split(",")):
            self.keys.add(pair.split("=", 1)[1].strip())
        for name in ("src", "href", "action"):
            if name in a:
                self.addresses.append(a[name])
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "label" and "for" in a:
            self.labelled.add(a["for"])
        if tag in ("input", "select", "textarea") and a.get("type") not in ("checkbox", "radio", "hidden"):
            self.fields.append(a.get("id", "?"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(data.strip())


def parse(path: Path) -> Markup:
    markup = Markup()
    markup.feed(path.read_text(encoding="utf-8"))
    return markup


def test_both_catalogues_say_the_same_things() -> None:
    fr, en = catalogue("fr"), catalogue("en")
    assert fr.keys() == en.keys()
    for key in fr:
        assert shape(fr[key]) == shape(en[key]), key
        assert placeholders(fr[key]) == placeholders(en[key]), key
        assert fr[key] and en[key], key


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value]


@pytest.mark.parametrize("language", ["fr", "en"])
def test_counts_are_said_with_real_plurals(language: str) -> None:
    """No "participant(s)": a sentence with a count has its forms, chosen by Intl.PluralRules."""
    for key, value in catalogue(language).items():
        for text in strings(value):
            assert not re.search(r"\w\((s|es|x)\)", text), (key, text)
        if "{count}" in json.dumps(value) and not key.startswith("doc."):
            assert isinstance(value, dict) and set(value) == {"one", "other"}, key


@pytest.mark.parametrize("page", HTML, ids=lambda p: p.name)
def test_a_page_holds_no_words_of_its_own_and_no_foreign_address(page: Path) -> None:
    markup = parse(page)
    assert markup.text == [], "text belongs in the catalogues"
    keys = {key for key in markup.keys if not key.startswith("$")}  # "$document": the server fills it in
    assert keys <= catalogue("fr").keys(), keys - catalogue("fr").keys()
    for address in markup.addresses:
        assert address.startswith(("/", "#")) and not address.startswith("//"), address
        if address.startswith("/static/"):
            assert (STATIC / address.removeprefix("/static/").split("#")[0]).is_file(), address
    assert len(markup.ids) == len(set(markup.ids)), "duplicate ids"
    assert set(markup.fields) <= markup.labelled, "every field has a label"


def luminance(color: str) -> float:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# Text on background, as the style sheet pairs them; WCAG AA asks 4.5:1 for body text.
PAIRS = [
    ("--ink", "--paper"),
    ("--ink", "--wash"),
    ("--muted", "--paper"),
    ("--muted", "--wash"),
    ("--brand", "--paper"),
    ("--brand", "--wash"),
    ("--brand-ink", "--brand"),
    ("--danger", "--paper"),
    ("--danger", "--wash"),
    ("--room-ink", "--room"),
    ("--room-ink", "--room-panel"),
]


def test_colours_meet_the_contrast_of_wcag_aa() -> None:
    css = (STATIC / "css" / "classe.css").read_text(encoding="utf-8")
    colours = dict(re.findall(r"(--[\w-]+): (#[0-9a-fA-F]{6});", css))
    for ink, background in PAIRS:
        assert contrast(colours[ink], colours[background]) >= 4.5, (ink, background)


def test_every_key_the_scripts_name_exists() -> None:
    keys = catalogue("fr").keys()
    named = set()
    for script in SCRIPTS:
        source = script.read_text(encoding="utf-8")
        named |= set(re.findall(KEY_LITERAL, source))
        assert "innerHTML" not in source, f"{script.name}: build elements, never HTML strings"
        without_namespaces = source.replace('"http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", without_namespaces), f"{script.name} names another host"
    assert len(named) > 30  # the pattern still finds them
    assert named <= keys, named - keys


async def test_every_page_is_served_with_the_content_policy(classe: RunningServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for route in [*PAGES, *DOCUMENTS]:
            async with http.get(classe.url + route.replace("{code}", "any-code")) as response:
                assert response.status == 200, route
                assert "default-src 'self'" in response.headers["Content-Security-Policy"]
                assert response.headers["Cache-Control"] == "no-cache"
