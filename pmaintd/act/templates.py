"""Command templates: `{placeholder}` substitution where every substituted value is shell-quoted.

Entity names come from devices and the network (serial numbers, sysName, ifName) and must be treated as hostile:
an entity called `x; touch /tmp/p` or `$(reboot)` has to reach the command as one inert argument. So templates
are parsed with string.Formatter (never str.format on raw values), each value goes through shlex.quote, and a
placeholder written inside quotes is refused at config load, because `'{entity}'` would turn the quoting off.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping

PLACEHOLDERS = ("entity", "host", "kind", "probability", "horizon_hours")
"""What a template may use: the forecast's entity, its host, its kind, probability and horizon."""

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template that cannot be rendered safely; the message says which placeholder and why."""


def _quote_state(text: str, state: str) -> str:
    """Track the shell quoting state ('' outside, "'" or '"' inside) across a literal piece of template."""
    i = 0
    while i < len(text):
        c = text[i]
        if state == "'":
            if c == "'":
                state = ""
        elif c == "\\":
            i += 1  # the next character is escaped, outside single quotes
        elif state == '"':
            if c == '"':
                state = ""
        elif c in "'\"":
            state = c
        i += 1
    return state


def check_template(template: str) -> None:
    """Raise TemplateError unless every `{...}` is a known bare placeholder outside shell quotes."""
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    state = ""
    for literal, name, spec, conversion in parts:
        state = _quote_state(literal, state)
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise TemplateError(
                f"unknown placeholder {{{name}}}; allowed: {allowed} (a literal brace is written {{{{ or }}}})"
            )
        if spec or conversion:
            raise TemplateError(f"placeholder {{{name}}} takes no conversion or format spec")
        if state:
            raise TemplateError(
                f"placeholder {{{name}}} is inside {state}quotes{state}; write it bare: pmaintd quotes every value"
            )


def render(template: str, values: Mapping[str, object]) -> str:
    """Substitute placeholders, each value passed through shlex.quote; literal text is kept as written."""
    check_template(template)
    out: list[str] = []
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is not None:
            if name not in values:
                raise TemplateError(f"no value for placeholder {{{name}}}")
            out.append(shlex.quote(_text(values[name])))
    return "".join(out)


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
