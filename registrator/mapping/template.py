"""The subset of Go `text/template` that registrator's `-tags` flag accepts.

Templates are parsed once at startup, so a template that uses anything unsupported is a clear
startup error instead of registrator's `log.Fatalf` at the first registration. Rendering is pure: it
reads the container's inspect document and never fetches anything (registrator's `httpGet` and
`jsonParse` are refused). A render error only drops this template's tags for that container.

Supported: literal text, `{{ pipeline }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`,
field chains on the inspect document (`.ID`, `.Config.Labels`; Go field names, matched to the JSON
keys case-insensitively), string/raw-string/integer literals, parentheses, `|` pipes, Go's `index`,
and registrator's functions strSlice, sIndex, mIndex, toUpper, toLower, replace, join, split,
splitIndex, matchFirstElement and matchAllElements.

What a template may compute is bounded, since it runs on data every container supplies: integer
literals fit Go's int64, parentheses nest at most MAX_DEPTH deep, regular expressions are string
literals checked at startup, and text is at most MAX_TEXT characters. Any failure while rendering is
a TemplateError.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union


class TemplateError(ValueError):
    pass


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 32
# The rendered text becomes tags on every service of the container, stored in Consul's catalog and
# sent in every catalog and health answer, while DNS cannot serve a tag longer than a 63-byte label.
# A real tag list (an ECS task ARN is ~100 characters) fits many times over; the same bound stops
# replace and join, whose results nested calls could otherwise grow exponentially.
MAX_TEXT = 8192
PATTERN_FUNCTIONS = ("matchFirstElement", "matchAllElements")


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | int


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    commands: tuple[Node, ...]


Node = Union[Field, Literal, Call, Pipeline]


def _sequence_index(items: Sequence[Any], i: int) -> Any:
    """registrator's clamped indexing: negative counts from the end, out of range clamps."""
    if not items:
        raise TemplateError("index of an empty list")
    if i < 0:
        return items[0] if -i >= len(items) else items[len(items) + i]
    return items[min(i, len(items) - 1)]


def _int(value: Any) -> int:
    """Go's `int` parameters: an integer within int64, never a string or a bool."""
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        raise TemplateError(f"{value!r} is not an integer in Go's int64 range")
    return value


def _bounded(length: int) -> None:
    if length > MAX_TEXT:
        raise TemplateError(f"the result would be longer than {MAX_TEXT} characters")


def _replace(n: Any, old: str, new: str, value: Any) -> str:
    text = str(value)
    count = text.count(old) if _int(n) < 0 else min(n, text.count(old))
    _bounded(len(text) + count * (len(new) - len(old)))
    return text.replace(old, new, count)


def _join(separator: str, items: Any) -> str:
    texts = [str(i) for i in items or ()]
    _bounded(sum(map(len, texts)) + len(separator) * max(len(texts) - 1, 0))
    return separator.join(texts)


def _str_slice(value: str, *bounds: int) -> str:
    bounds = tuple(map(_int, bounds))
    if len(bounds) == 1 and len(value) >= bounds[0]:
        return value[bounds[0]:]
    if len(bounds) == 2 and len(value) >= max(bounds):
        return value[bounds[0]:] if bounds[1] < bounds[0] else value[bounds[0]:bounds[1]]
    return value


def _go_index(collection: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(collection, Mapping):
            collection = collection.get(key, "")
        elif isinstance(collection, Sequence) and isinstance(key, int) and 0 <= key < len(collection):
            collection = collection[key]
        else:
            raise TemplateError(f"index {key!r} out of range")
    return collection


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "strSlice": _str_slice,
    "sIndex": lambda i, items: _sequence_index(list(items), _int(i)),
    "mIndex": lambda key, mapping: (mapping or {}).get(key, ""),
    "toUpper": lambda v: str(v).upper(),
    "toLower": lambda v: str(v).lower(),
    "replace": _replace,
    "join": _join,
    "split": lambda sep, v: str(v).split(sep),
    "splitIndex": lambda i, sep, v: _sequence_index(str(v).split(sep), _int(i)),
    "matchFirstElement": lambda rx, items: next((e for e in items or () if re.search(rx, e)), ""),
    "matchAllElements": lambda rx, items: [e for e in items or () if re.search(rx, e)],
    "index": _go_index,
}
REFUSED = {
    "httpGet": "it would fetch a URL at every registration",
    "jsonParse": "it only serves httpGet, which is refused",
}
_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_GO_STRING_PART = re.compile(r'\\(?:(?P<byte>x[0-9A-Fa-f]{2}|[0-7]{3})|(?P<rune>u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})'
                             r'|(?P<named>[abfnrtv\\"]))'
                             r"|(?P<unknown>\\.?)|(?P<text>[^\\]+)", re.S)
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<int>-?[0-9]+)(?![\w.])'
                    r"|(?P<field>(?:\.[A-Za-z_]\w*)+|\.)"
                    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>[|()]))")


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[str | Pipeline, ...]

    def render(self, data: Mapping[str, Any]) -> str:
        """The text for one container; whatever goes wrong with its data is a TemplateError."""
        try:
            text = "".join(part if isinstance(part, str) else _text(_eval(part, data)) for part in self.parts)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"{type(exc).__name__}: {exc}") from None
        if len(text) > MAX_TEXT:
            raise TemplateError(f"the rendered text is longer than {MAX_TEXT} characters")
        return text


def parse(source: str) -> Template:
    parts: list[str | Pipeline] = []
    position = 0
    for match in _ACTION.finditer(source):
        text = source[position:match.start()]
        if match.group(1):
            text = text.rstrip()
        parts.append(text)
        position = match.end()
        if match.group(3):
            rest = source[position:]
            position += len(rest) - len(rest.lstrip())
        body = match.group(2).strip()
        if body.startswith("/*") and body.endswith("*/"):
            continue
        parts.append(_parse_action(body, source))
    if "{{" in source[position:] or "}}" in source[position:]:
        raise TemplateError(f"template {source!r}: unbalanced braces")
    parts.append(source[position:])
    return Template(source, tuple(p for p in parts if p != ""))


def _parse_action(body: str, source: str) -> Pipeline:
    tokens = _tokenize(body, source)
    pipeline, rest = _parse_pipeline(tokens, source, 0)
    if rest:
        raise TemplateError(f"template {source!r}: unexpected {rest[0][1]!r}")
    return pipeline


def _tokenize(body: str, source: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(body.rstrip()):
        match = _TOKEN.match(body, position)
        if not match:
            raise TemplateError(f"template {source!r}: cannot parse {body[position:].strip()!r} (unsupported syntax)")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _parse_pipeline(tokens: list[tuple[str, str]], source: str, depth: int) -> tuple[Pipeline, list[tuple[str, str]]]:
    commands: list[Node] = []
    while True:
        command, tokens = _parse_command(tokens, source, depth, piped=len(commands) > 0)
        commands.append(command)
        if tokens and tokens[0] == ("punct", "|"):
            tokens = tokens[1:]
            continue
        return Pipeline(tuple(commands)), tokens


def _parse_command(tokens: list[tuple[str, str]], source: str, depth: int, piped: bool) -> tuple[Node, list[tuple[str, str]]]:
    if not tokens:
        raise TemplateError(f"template {source!r}: empty command")
    kind, value = tokens[0]
    if kind == "name":
        if value in REFUSED:
            raise TemplateError(f"template {source!r}: {value} is not supported: {REFUSED[value]}")
        if value not in FUNCTIONS:
            raise TemplateError(f"template {source!r}: unsupported function or keyword {value!r}")
        args: list[Node] = []
        tokens = tokens[1:]
        while tokens and tokens[0] not in (("punct", "|"), ("punct", ")")):
            arg, tokens = _parse_operand(tokens, source, depth)
            args.append(arg)
        if value in PATTERN_FUNCTIONS:
            _check_pattern(value, args, source)
        _check_arity(value, len(args) + piped, source)
        return Call(value, tuple(args)), tokens
    return _parse_operand(tokens, source, depth)


def _check_arity(function: str, given: int, source: str) -> None:
    """A call's argument count (a piped value is the last) is known at parse time: a wrong one is a startup error."""
    params = inspect.signature(FUNCTIONS[function]).parameters.values()
    fixed = sum(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
    more = any(p.kind is p.VAR_POSITIONAL for p in params)
    if given < fixed or (given > fixed and not more):
        raise TemplateError(f"template {source!r}: {function} takes {'at least ' if more else ''}{fixed} "
                            f"argument{'' if fixed == 1 else 's'}, {given} given")


def _check_pattern(function: str, args: list[Node], source: str) -> None:
    """Python's regular expressions backtrack (Go's do not): a pattern from container data could
    run for ever, so a pattern is a literal, and a bad one is a startup error."""
    pattern = args[0] if args else None
    if not isinstance(pattern, Literal) or not isinstance(pattern.value, str):
        raise TemplateError(f"template {source!r}: {function}: the pattern must be a string literal")
    try:
        re.compile(pattern.value)
    except (re.error, OverflowError, RecursionError) as exc:
        raise TemplateError(f"template {source!r}: {function}: bad pattern {pattern.value!r}: {exc}") from None


def _parse_operand(tokens: list[tuple[str, str]], source: str, depth: int) -> tuple[Node, list[tuple[str, str]]]:
    kind, value = tokens[0]
    rest = tokens[1:]
    if kind == "field":
        return Field(tuple(p for p in value.split(".") if p)), rest
    if kind == "str":
        return Literal(_go_string(value, source)), rest
    if kind == "raw":
        return Literal(value[1:-1]), rest
    if kind == "int":
        if len(value.lstrip("-")) > 19 or not INT64_MIN <= int(value) <= INT64_MAX:
            raise TemplateError(f"template {source!r}: {value} is outside Go's int64 range")
        return Literal(int(value)), rest
    if (kind, value) == ("punct", "("):
        if depth == MAX_DEPTH:
            raise TemplateError(f"template {source!r}: parentheses nested deeper than {MAX_DEPTH}")
        inner, rest = _parse_pipeline(rest, source, depth + 1)
        if not rest or rest[0] != ("punct", ")"):
            raise TemplateError(f"template {source!r}: missing ')'")
        return inner, rest[1:]
    if kind == "name":
        raise TemplateError(f"template {source!r}: function {value!r} used as an argument needs parentheses")
    raise TemplateError(f"template {source!r}: unexpected {value!r}")


def _go_part(kind: str | None, part: str, text: bytearray) -> str:
    """Append one part of a Go string literal's body (text or an escape) to `text`; what is wrong with it, if anything."""
    if kind == "text":
        if "\n" in part:
            return "newline in string"
        text += part.encode("utf-8", "surrogatepass")
    elif kind == "named":
        text.append(_GO_ESCAPES[part[1]])
    elif kind == "byte":
        value = int(part[2:], 16) if part[1] == "x" else int(part[1:], 8)
        if value > 255:
            return f"octal escape value {value} > 255"
        text.append(value)
    elif kind == "rune":
        code = int(part[2:], 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return f"escape {part!r} is not a Unicode code point"
        text += chr(code).encode()
    else:
        return f"unknown escape sequence {part!r}"
    return ""


def _go_string(literal: str, source: str) -> str:
    """A Go interpreted string literal. `\\x` and octal escapes are bytes, as in Go, so the result
    must be valid UTF-8: Consul's JSON cannot carry anything else."""
    def refuse(problem: str) -> TemplateError:
        return TemplateError(f"template {source!r}: string {literal!r}: {problem}")

    text = bytearray()
    for match in _GO_STRING_PART.finditer(literal[1:-1]):
        problem = _go_part(match.lastgroup, match.group(), text)
        if problem:
            raise refuse(problem)
    try:
        return text.decode()
    except UnicodeDecodeError:
        raise refuse("not valid UTF-8") from None


def _eval(node: Node, data: Mapping[str, Any], piped: tuple[Any, ...] = ()) -> Any:
    if isinstance(node, Pipeline):
        result: tuple[Any, ...] = ()
        for command in node.commands:
            result = (_eval(command, data, result),)
        return result[0]
    if isinstance(node, Call):
        args = [_eval(arg, data) for arg in node.args] + list(piped)
        try:
            return FUNCTIONS[node.function](*args)
        except TemplateError as exc:
            raise TemplateError(f"{node.function}: {exc}") from None
        except Exception:  # the arity is checked at parse time: a type the function cannot take
            raise TemplateError(f"{node.function}: wrong type of argument ({', '.join(map(_go_type, args))})") from None
    if piped:
        raise TemplateError("only a function can receive a piped value")
    if isinstance(node, Literal):
        return node.value
    return _lookup(data, node.path)


def _go_type(value: Any) -> str:
    """A value's kind as Go's template engine would name it, for messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, (list, tuple)):
        return "slice"
    return {int: "int", str: "string"}.get(type(value), type(value).__name__)


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(data, Mapping):
            return ""
        if name in data:
            data = data[name]
        else:
            data = next((v for k, v in data.items() if str(k).lower() == name.lower()), "")
    return data


def _text(value: Any) -> str:
    """Print a value the way Go's template engine prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)
