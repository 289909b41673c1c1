"""The player page stays in small ES modules: app.js only wires, no function grows past 50 lines,
and every name a module imports is one its source module exports.

No JavaScript toolchain is needed: a small scanner blanks out comments, strings, template
literals and regular expressions, then matches braces. A `{` opens a function body when it
follows `=>` or the `)` of a parameter list that is not an `if`/`for`/`while`/`switch`/`catch`
head; the function's length runs from the line of that parameter list to its closing `}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "web" / "static"
MAX_FUNCTION_LINES = 50
MAX_APP_LINES = 150
CONTROL_HEADS = {"if", "for", "while", "switch", "catch", "with"}
# A `/` after one of these (or at the start) begins a regular expression, not a division.
REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {""}


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    first_line: int
    last_line: int

    @property
    def lines(self) -> int:
        return self.last_line - self.first_line + 1


def _skip_quoted(source: str, i: int, quote: str) -> int:
    """Index just past the string (or template literal) opening at `i`."""
    i += 1
    while source[i] != quote:
        i += 2 if source[i] == "\\" else 1
    return i + 1


def _skip_regex(source: str, i: int) -> int:
    """Index just past the regular expression literal opening at `i` (flags included)."""
    i += 1
    in_class = False
    while in_class or source[i] != "/":
        if source[i] == "\\":
            i += 1
        elif source[i] == "[":
            in_class = True
        elif source[i] == "]":
            in_class = False
        i += 1
    i += 1
    while i < len(source) and source[i].isalpha():
        i += 1
    return i


def blank_literals(source: str) -> str:
    """`source` with comments, strings, templates and regexes replaced by spaces (newlines kept,
    so line numbers hold). Template `${…}` parts are blanked too: the page never puts a
    function inside one."""
    out: list[str] = []
    before = ""  # the last code character that is not white space
    i = 0
    while i < len(source):
        ch, nxt = source[i], source[i + 1 : i + 2]
        if ch == "/" and nxt == "/":
            end = source.find("\n", i)
            end = len(source) if end < 0 else end
        elif ch == "/" and nxt == "*":
            end = source.index("*/", i) + 2
        elif ch in "'\"`":
            end = _skip_quoted(source, i, ch)
            before = ch  # a value: a `/` after it divides
        elif ch == "/" and before in REGEX_AFTER:
            end = _skip_regex(source, i)
            before = ch
        else:
            out.append(ch)
            before = before if ch.isspace() else ch
            i += 1
            continue
        out.append(re.sub(r"[^\n]", " ", source[i:end]))
        i = end
    return "".join(out)


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _opening_paren(text: str, close: int) -> int:
    depth = 0
    for i in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced ')' at line {_line(text, close)}")


def _function_head(text: str, brace: int) -> tuple[str, int] | None:
    """(name, index where the function starts) if the `{` at `brace` opens a function body."""
    before = text[:brace].rstrip()
    if before.endswith("=>"):
        head = before[:-2].rstrip()
        start = _opening_paren(text, len(head) - 1) if head.endswith(")") else len(head) - 1
        return "(arrow)", start
    if not before.endswith(")"):
        return None
    start = _opening_paren(text, len(before) - 1)
    name = re.search(r"([\w$]*)\s*$", text[:start])
    word = name.group(1) if name else ""
    if word in CONTROL_HEADS:
        return None
    return word or "(anonymous)", start


def functions(source: str) -> list[Function]:
    """Every function, method and arrow function with a block body, nested ones included."""
    text = blank_literals(source)
    found: list[Function] = []
    stack: list[tuple[str, int] | None] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(_function_head(text, i))
        elif ch == "}":
            head = stack.pop()
            if head is not None:
                name, start = head
                found.append(Function(name, _line(text, start), _line(text, i)))
    assert not stack, "unbalanced braces"
    return found


def modules() -> list[Path]:
    return sorted(STATIC.glob("*.js"))


def test_the_scanner_measures_functions_and_ignores_literals() -> None:
    body = "\n".join(f"  x += {n};" for n in range(49))
    source = (
        "const re = /[{]\\//g; // a { in a comment\n"
        "export async function long(a,\n  b) {\n" + body + "\n}\n"
        "class A {\n  get b() { return `${'}'}` }\n"
        "  m() { if (x) { y(() => { z('{'); }); } }\n}\n"
    )
    found = {f.name: f.lines for f in functions(source)}
    assert found == {"long": 52, "b": 1, "m": 1, "(arrow)": 1}


def test_app_js_only_wires() -> None:
    lines = len((STATIC / "app.js").read_text().splitlines())
    assert lines <= MAX_APP_LINES, f"app.js is {lines} lines"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_no_page_function_is_over_50_lines(path: Path) -> None:
    long = [f for f in functions(path.read_text()) if f.lines > MAX_FUNCTION_LINES]
    assert not long, [f"{path.name}:{f.first_line} {f.name} ({f.lines} lines)" for f in long]


IMPORT = re.compile(r"import\s*\{([^}]*)\}\s*from\s*'\./([\w.-]+)'")
EXPORT = re.compile(r"export\s+(?:async\s+)?(?:function|class|const|let)\s+([\w$]+)")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_every_imported_name_is_exported(path: Path) -> None:
    for names, target in IMPORT.findall(without_line_comments(path.read_text())):
        exported = set(EXPORT.findall((STATIC / target).read_text()))
        wanted = {name.strip() for name in names.split(",") if name.strip()}
        assert wanted <= exported, f"{path.name} imports {wanted - exported} from {target}"


def without_line_comments(source: str) -> str:
    """The module's import statements (comments dropped, so a commented-out one is not read)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
