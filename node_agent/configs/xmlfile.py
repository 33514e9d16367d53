"""The ``xml`` parser (7 Days to Die's ``serverconfig.xml``, Space Engineers' ``.cfg``).

Parsed by defusedxml: a file that declares entities or refers to external ones is refused
(no expansion, no fetch). A rule's ``match`` is a dotted path of elements whose first
segment is the root element (Wings' reading of eggs): ``MyConfig.SessionSettings.GameMode``.
As in XPath, ``[n]`` picks the n-th (from 1) of the elements the segment before named, and
``[@name='ServerPort']`` those with that attribute; ``*`` is every child element. The rule
sets the element's text; a last segment ``@attr`` sets that attribute instead, and so does a
value written ``[attr='value']`` (Wings' form). A missing element (and the attribute of an
``[@attr='v']`` step) is created on a path without ``*`` or ``[n]``.

Kept: everything before the root element byte for byte (declaration, comments, doctype),
comments and processing instructions inside it, attribute order and whitespace. Rewritten:
entity and character references (written as plain text where XML allows), CDATA sections
(as escaped text), the blanks between attributes (one space) and their quotes (``"``), a
self-closing tag (``<a />``), and namespace declarations (kept for
the namespaces used, with their prefixes; an unused one is dropped).
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET  # building and writing only: defusedxml parses
from collections.abc import Iterator, Sequence
from typing import Final

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from node_agent.configs.keys import Attribute, Index, Name, Segment, Wildcard, parse_key
from node_agent.configs.rules import Problems, Rule, RuleProblem, attempt
from node_agent.configs.text import Unparsable, decode, encode

# Wings' value form that sets an attribute: [name='value'].
_ATTRIBUTE_VALUE: Final = re.compile(r"^\[(\w+)='(.*)'\]$", re.DOTALL)
# The doctype's internal subset is [^\]]*: with ".*?" there, "[]" repeated made the
# expression backtrack exponentially ("<!DOCTYPE " + "[]" * 25 + "[<a/>": 17 s, under the
# GIL). Both read the subset up to its first "]".
_PROLOG_ITEM: Final = re.compile(
    r"\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[[^\]]*\])*>", re.DOTALL | re.IGNORECASE
)
# What XML 1.0 cannot hold, even as a reference: C0 controls but tab and line ends, lone
# surrogates, U+FFFE and U+FFFF. Written as they are, the file is ill-formed for the game and
# for every later start.
_NOT_XML: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# ET's prefix registry is process-wide: one file's prefixes at a time.
_NAMESPACES_LOCK: Final = threading.Lock()
MAX_MATCHES: Final = 100_000


class _Builder(ET.TreeBuilder):
    """A TreeBuilder that keeps comments and processing instructions, and notes prefixes."""

    def __init__(self) -> None:
        super().__init__(insert_comments=True, insert_pis=True)
        self.prefixes: dict[str, str] = {}

    def start_ns(self, prefix: str, uri: str) -> None:
        self.prefixes.setdefault(uri, prefix)


def _split_document(text: str) -> tuple[str, str, str]:
    """(prolog, root element, trailer) of the document's text."""
    position = 0
    while position < len(text):
        item = _PROLOG_ITEM.match(text, position)
        if item is None or item.end() == position:
            break
        position = item.end()
    end = len(text)
    # Backwards over blanks, comments and processing instructions after the root element,
    # each step costing only what it passes over.
    while True:
        while end > position and text[end - 1].isspace():
            end -= 1
        if text.endswith("-->", position, end):
            opening = text.rfind("<!--", position, end - 3)
        elif text.endswith("?>", position, end):
            opening = text.rfind("<?", position, end - 2)
        else:
            break
        if opening < 0:
            break
        end = opening
    return text[:position], text[position:end], text[end:]


def _parse(body: str) -> tuple[ET.Element, dict[str, str]]:
    builder = _Builder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=False)
    try:
        parser.feed(body)
        root = parser.close()
    except DefusedXmlException as err:
        raise Unparsable(
            f"it declares or refers to entities, never expanded ({type(err).__name__})"
        ) from err
    except ET.ParseError as err:
        raise Unparsable(f"not valid XML ({err})") from err
    if not isinstance(root, ET.Element):
        raise Unparsable("no root element")
    return root, builder.prefixes


def _local(tag: object) -> str:
    """A tag without its ``{namespace}``: eggs name elements by their local names."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _new_child(parent: ET.Element, tag: str) -> ET.Element:
    """A new last child of ``parent``, indented like its siblings."""
    child = ET.Element(tag)
    if len(parent):
        child.tail = parent[-1].tail
        parent[-1].tail = parent[-2].tail if len(parent) > 1 else parent.text
    parent.append(child)
    return child


class _Walk:
    """One rule's elements: groups of siblings per step, created where the path allows."""

    def __init__(self, rule: Rule, segments: tuple[Segment, ...]) -> None:
        self.rule = rule
        self.segments = segments
        self.create = rule.creates and not any(
            isinstance(segment, Wildcard | Index) for segment in segments
        )
        # id() of elements: the parent each was reached from, and those this rule created.
        self._parents: dict[int, ET.Element] = {}
        self._fresh: set[int] = set()

    def elements(self, root: ET.Element) -> list[ET.Element]:
        first, *rest = self.segments
        if not (
            isinstance(first, Wildcard)
            or (isinstance(first, Name) and first.text == _local(root.tag))
        ):
            return []
        groups: list[list[ET.Element]] = [[root]]
        for segment in rest:
            groups = list(self._step(groups, segment))
            if sum(len(group) for group in groups) > MAX_MATCHES:
                raise RuleProblem(f"{self.rule.match}: matches too many elements; not applied")
        return [element for group in groups for element in group]

    def _step(self, groups: list[list[ET.Element]], segment: Segment) -> Iterator[list[ET.Element]]:
        for group in groups:
            if isinstance(segment, Index):
                yield group[segment.number - 1 : segment.number] if segment.number >= 1 else []
            elif isinstance(segment, Attribute):
                kept = [element for element in group if element.get(segment.name) == segment.value]
                if not kept and self.create and group:
                    created = self._with_attribute(group, segment)
                    kept = [] if created is None else [created]
                yield kept
            else:
                for parent in group:
                    children = [
                        child
                        for child in parent
                        if isinstance(child.tag, str)
                        and (isinstance(segment, Wildcard) or _local(child.tag) == segment.text)
                    ]
                    if not children and self.create and isinstance(segment, Name):
                        children = [_new_child(parent, segment.text)]
                        self._fresh.add(id(children[0]))
                    for child in children:
                        self._parents[id(child)] = parent
                    yield children

    def _with_attribute(self, group: list[ET.Element], segment: Attribute) -> ET.Element | None:
        """The element the step before just created, or a new sibling, given the attribute."""
        fresh = [element for element in group if id(element) in self._fresh]
        parent = self._parents.get(id(group[0]))
        if fresh:
            element = fresh[0]
        elif parent is None:
            return None  # the root element: there is only one
        else:
            element = _new_child(parent, group[0].tag)
            self._fresh.add(id(element))
        element.set(segment.name, segment.value)
        return element

    def apply(self, root: ET.Element, problems: Problems) -> bool:
        if found := _NOT_XML.search(self.rule.template.text):
            problems.add(
                f"{self.rule.match}: the value holds U+{ord(found[0]):04X}, which XML cannot "
                "hold; not applied"
            )
            return False
        target = self.segments[-1]
        attribute: str | None = None
        segments = self.segments
        if isinstance(target, Name) and target.text.startswith("@") and len(segments) > 1:
            attribute, self.segments = target.text[1:], segments[:-1]
        try:
            elements = self.elements(root)
        finally:
            self.segments = segments
        changed = False
        for element in elements:
            if attribute is None:
                changed |= self._set_text_or_wings_attribute(element, problems)
            else:
                current = element.get(attribute)
                value = attempt(self.rule, current, problems)
                if value is not None and value != current:
                    element.set(attribute, value)
                    changed = True
        return changed

    def _set_text_or_wings_attribute(self, element: ET.Element, problems: Problems) -> bool:
        # The form is the blueprint's: a variable's value of the form "[attr='v']" is text.
        form = _ATTRIBUTE_VALUE.match(self.rule.template.source)
        if form is not None and self.rule.pattern is None:
            name = form[1]
            current = element.get(name)
            if self.rule.equals is not None and current != self.rule.equals:
                return False
            # The filled value between the form's own "[name='" and "']" (placeholders are
            # only ever inside them: a name is a word).
            filled = self.rule.template.text[len(name) + 3 : -2]
            if current == filled:
                return False
            element.set(name, filled)
            return True
        current_text = (element.text or "").strip()
        exists = id(element) not in self._fresh
        value = attempt(self.rule, current_text if exists else None, problems)
        if value is None or (exists and value == current_text):
            return False
        element.text = value
        return True


def _serialize(root: ET.Element, prefixes: dict[str, str]) -> str:
    with _NAMESPACES_LOCK:
        for uri, prefix in prefixes.items():
            if prefix and not re.fullmatch(r"ns\d+", prefix):
                try:
                    ET.register_namespace(prefix, uri)
                except ValueError:
                    continue
        return ET.tostring(root, encoding="unicode")


def edit_xml(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to an XML document; a new file gets its root from the first rule."""
    text, bom = decode(data)
    prolog, body, trailer = _split_document(text)
    if body.strip():
        root, prefixes = _parse(prolog + body)
    else:
        segments = parse_key(rules[0].match) if rules else ()
        if not segments or not isinstance(segments[0], Name):
            raise Unparsable("empty, and the first rule names no root element")
        root, prefixes = ET.Element(segments[0].text), {}
        prolog = prolog or '<?xml version="1.0" encoding="utf-8"?>\n'
        trailer = trailer or "\n"
    changed = False
    for rule in rules:
        try:
            changed |= _Walk(rule, parse_key(rule.match)).apply(root, problems)
        except (RuleProblem, ValueError) as err:
            problems.add(str(err))
    if not changed:
        return data
    return encode(prolog + _serialize(root, prefixes) + trailer, bom)
