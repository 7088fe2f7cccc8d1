"""Narrative safety (FHIR R4 invariant txt-1).

A resource's `text.div` is XHTML that clinical apps render. FHIR allows only basic
formatting there (HTML 4.0 chapters 7-11 and 12.1, links, images, style attributes):
no scripts, no forms, no event handlers, no active URLs. Accepting `<script>` or an
`onclick` would store an attack that runs in the browser of every clinician who opens
the record, so a narrative outside that subset is refused like any invalid element.

Messages name the element path and the rule, never the markup (it may hold PHI).
txt-2 (some non-whitespace content) is not enforced: an empty narrative is harmless and
common in data from other systems, and refusing it would lose records for no safety gain.
"""

from __future__ import annotations

from html.parser import HTMLParser

from phivault.types import Resource

# txt-1: the basic formatting elements of HTML 4.0 chapters 7-11 and 12.1, plus a and img.
ALLOWED_ELEMENTS = frozenset(
    """
    a abbr acronym address b bdo big blockquote br caption cite code col colgroup dd del dfn
    div dl dt em h1 h2 h3 h4 h5 h6 hr i img ins kbd li ol p pre q samp small span strong sub
    sup table tbody td tfoot th thead tr tt ul var
    """.split()
)
# Attributes holding a URL: only these schemes (or a relative/fragment reference) pass.
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "usemap"})
SAFE_SCHEMES = ("http:", "https:", "mailto:", "tel:", "urn:")
_MAX_ISSUES = 20


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_ELEMENTS:
            self.problems.append("an element outside the basic HTML formatting subset")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append("an event-handler attribute")
            elif name in URL_ATTRIBUTES and value is not None and not _safe_url(tag, value):
                self.problems.append("a URL with an active or unknown scheme")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_pi(self, data: str) -> None:
        self.problems.append("a processing instruction")

    def handle_decl(self, decl: str) -> None:
        self.problems.append("a markup declaration")

    def unknown_decl(self, data: str) -> None:
        self.problems.append("a markup declaration")


def _safe_url(tag: str, value: str) -> bool:
    url = "".join(value.split()).lower()  # browsers ignore whitespace inside "java script:"
    if ":" not in url.split("/", 1)[0].split("#", 1)[0].split("?", 1)[0]:
        return True  # relative or fragment reference
    if tag == "img" and url.startswith("data:image/") and not url.startswith("data:image/svg"):
        return True  # an internally contained image (not SVG: it can carry script)
    return url.startswith(SAFE_SCHEMES)


def narrative_problems(div: str) -> list[str]:
    """The txt-1 rules `div` breaks (empty when it is safe)."""
    checker = _Checker()
    checker.feed(div)
    checker.close()
    return list(dict.fromkeys(checker.problems))


def unsafe_narratives(resource: Resource) -> list[str]:
    """Paths of every narrative in `resource` (its own, contained resources', Composition
    sections') that breaks txt-1, with the rule broken."""
    found: list[str] = []
    _walk(resource, str(resource.get("resourceType", "Resource")), found)
    return found[:_MAX_ISSUES]


def _walk(node: object, path: str, found: list[str]) -> None:
    if isinstance(node, dict):
        text = node.get("text")
        if isinstance(text, dict) and isinstance(text.get("div"), str):
            for problem in narrative_problems(text["div"]):
                found.append(f"{path}.text.div: {problem}")
        for key, value in node.items():
            if key != "text":
                _walk(value, f"{path}.{key}", found)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _walk(item, f"{path}[{index}]", found)
