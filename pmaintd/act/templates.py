"""Command templates: `{placeholder}` substitution where every substituted value is shell-quoted.

Entity names come from devices and the network (serial numbers, sysName, ifName) and must be treated as hostile:
an entity called `x; touch /tmp/p` or `$(reboot)` has to reach the command as one inert argument. So templates
are parsed with string.Formatter (never str.format on raw values), each value goes through shlex.quote, and a
placeholder written inside quotes is refused at config load, because `'{entity}'` would turn the quoting off.
Quoting also cannot help where the shell runs a value as code: as the command word itself (`{entity} --now`,
`$({entity})`), or as an argument of a command that re-parses its arguments as a script (`eval`, `ssh`'s remote
command, the script of `sh -c`); nor for ssh's destination without `--` before it (a value can be an option).
A placeholder in such a place is refused too: remote commands go through `run_on`, which quotes for the
remote shell.
"""

from __future__ import annotations

import re
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


_SEPARATORS = re.compile(r"\|\||&&|\$\(|[;|&\n(`]")
_SSH_OPTS_WITH_ARG = set("BbcDEeFIiJLlmOoPpQRSWw")
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "su"}


_LEADING_KEYWORDS = {"if", "then", "do", "else", "elif", "while", "until", "!", "time", "{"}
"""Reserved words after which the next word is a command."""
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _evaluating_context(prefix: str) -> str | None:
    """Why a value following `prefix` would be run as shell code, or None. `prefix` is the template up to a
    placeholder outside quotes (earlier placeholders stand as plain words). A value is code when it is (part
    of) the command word, or an argument of a command that re-parses its arguments as a script."""
    plain = re.sub(r"'[^']*'", "''", prefix)
    plain = re.sub(r'"(?:[^"\\]|\\.)*"', '""', plain)  # a quoted string is one word, whatever it holds
    command = _SEPARATORS.split(plain)[-1]
    fragment = re.split(r"\s", command)[-1]  # the word the placeholder is glued to, if any
    words = shlex.split(command[: len(command) - len(fragment)], posix=True)
    if _ASSIGNMENT.match(fragment):
        return None
    while words and words[0] in _LEADING_KEYWORDS:
        words = words[1:]
    if words and words[0] in ("case", "for"):
        return None  # the word after `case`, and the list of `for x in`, are data
    while words and _ASSIGNMENT.match(words[0]):  # VAR=value prefixes of a command
        words = words[1:]
    words = [w.rsplit("/", 1)[-1] for w in words]
    if not words:
        return "in command position"
    if "eval" in words:
        return "an argument of eval, which runs it as shell code"
    if "ssh" in words:
        return _ssh_role(words[words.index("ssh") + 1 :])
    if words[-1] == "-c" and any(w in _SHELLS for w in words[:-1]):
        return "the script of a shell's -c"
    return None


def _ssh_role(args: list[str]) -> str | None:
    """ssh's destination is data when `--` precedes it (else a value like -oProxyCommand=... is an option);
    everything after the destination is a remote command line, which the remote shell parses again."""
    i, dashdash = 0, False
    while i < len(args):
        a = args[i]
        if a == "--":
            dashdash = True
            i += 1
            break
        if not a.startswith("-"):
            break
        i += 2 if a[-1] in _SSH_OPTS_WITH_ARG and len(a) == 2 else 1
    if i < len(args):
        return "part of ssh's remote command, which the remote shell parses again (use run_on instead)"
    return None if dashdash else "ssh's destination without a preceding --, so a value starting with - is an option"


def check_template(template: str) -> None:
    """Raise TemplateError unless every `{...}` is a known bare placeholder outside shell quotes."""
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    state = ""
    for part in parts:
        literal, name, spec, conversion = part
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
        prefix = "".join(lit + ("" if nm is None else "X") for lit, nm, _s, _c in parts[: parts.index(part) + 1])
        why = _evaluating_context(prefix)
        if why:
            raise TemplateError(f"placeholder {{{name}}} is {why}; quoting cannot make a value safe there")


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
