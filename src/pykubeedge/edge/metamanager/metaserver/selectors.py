"""Kubernetes label and field selectors, as the API server parses and applies them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``
(exists), ``!a`` (does not exist), joined by commas (all must hold). Field selectors:
``path=value``, ``path==value``, ``path!=value`` on dotted paths such as ``metadata.name``,
``metadata.namespace``, ``spec.nodeName`` or ``status.phase``::

    match = parse_label_selector("app in (web,api),tier!=db")
    match({"metadata": {"labels": {"app": "web"}}})          # True
    parse_field_selector("spec.nodeName=edge-1")(pod)      # True if bound to edge-1
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from pykubeedge.core.errors import DecodeError

Matcher = Callable[[Mapping[str, Any]], bool]

_KEY: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?"
                         r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE: Final = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)$")
_SET_OP: Final = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_MAX_SELECTOR: Final = 4096


class SelectorError(DecodeError):
    """A selector could not be parsed (the API server answers 400 Bad Request)."""


def parse_label_selector(text: str | None) -> Matcher:
    """A predicate on objects for a label selector; empty matches everything.

    >>> parse_label_selector("env,!canary")({"metadata": {"labels": {"env": "prod"}}})
    True
    """
    requirements = [_label_requirement(part) for part in _split_terms(text or "")]

    def match(obj: Mapping[str, Any]) -> bool:
        labels = _labels(obj)
        return all(requirement(labels) for requirement in requirements)

    return match


def parse_field_selector(text: str | None) -> Matcher:
    """A predicate on objects for a field selector; empty matches everything.

    >>> parse_field_selector("metadata.name=web")({"metadata": {"name": "web"}})
    True
    """
    requirements: list[tuple[list[str], str, bool]] = []
    for term in _split_terms(text or ""):
        if "!=" in term:
            path, _, value = term.partition("!=")
            negate = True
        elif "==" in term:
            path, _, value = term.partition("==")
            negate = False
        elif "=" in term:
            path, _, value = term.partition("=")
            negate = False
        else:
            raise SelectorError(f"invalid field selector term {term!r}")
        path = path.strip()
        if not path or any(not part for part in path.split(".")):
            raise SelectorError(f"invalid field path in {term!r}")
        requirements.append((path.split("."), value.strip(), negate))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_field(obj, path) == value) != negate for path, value, negate in requirements)

    return match


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses; empty terms are dropped."""
    if len(text) > _MAX_SELECTOR:
        raise SelectorError(f"selector longer than {_MAX_SELECTOR} characters")
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in selector {text!r}")
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in selector {text!r}")
    terms.append("".join(current).strip())
    return [term for term in terms if term]


def _label_requirement(term: str) -> Callable[[Mapping[str, str]], bool]:
    set_op = _SET_OP.match(term)
    if set_op:
        key = _check_key(set_op["key"])
        values = frozenset(_check_value(v.strip()) for v in set_op["values"].split(","))
        if set_op["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key_text, _, value_text = term.partition(op)
            key = _check_key(key_text.strip())
            value = _check_value(value_text.strip())
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = _check_key(term[1:].strip())
        return lambda labels: key not in labels
    key = _check_key(term)
    return lambda labels: key in labels


def _check_key(key: str) -> str:
    if not _KEY.match(key) or len(key) > 317:
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r}")
    return value


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _field(obj: Mapping[str, Any], path: list[str]) -> str:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
