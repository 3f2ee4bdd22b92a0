"""The user's own words for what a refusal names: the function, clause or statement as typed.

sqlglot normalises names as it parses (``list(x)`` becomes ``ARRAY_AGG``, ``string_agg``
becomes ``GROUP_CONCAT``, ``USING SAMPLE`` becomes ``TABLESAMPLE``, ``LOAD`` a
``Command``), so a message built from the tree quotes words the user never wrote. This
module reads them back from the text.

What sqlglot 30 records, and so how each word is found:

- A function parsed through the dialect's table of names (``list``, ``md5``, an unknown
  ``my_udf``...) carries the position of its name token in ``node.meta``; the name is
  that slice of the text.
- A function with a parser of its own (``max``, ``min``, ``string_agg``, ``listagg``,
  ``cast``, ``floor``, ``approx_quantile``...), one wrapped by its builder (``any_value``
  is ``IgnoreNulls(AnyValue)``), and keyword forms (``CURRENT_DATE``, ``CASE``) carry no
  position. Their name is found among the text's call tokens (a name followed by ``(``),
  narrowed to those whose parentheses enclose the node's positioned descendants, and
  proved by parsing the candidate's tokens alone: the candidate is the node's text only
  if it parses back to an equal tree.
- Statements and clauses are read from the tokens at the statement's own nesting level.

Only a refusal calls this module: nothing here runs on an accepted query. Each call
tokenizes the text once (tens of microseconds for a typical query) and parses small
fragments of it (usually one), within a budget of about two parses' worth of tokens; what
cannot be proved in it falls back to sqlglot's name. The tree may have lost its comments
and column qualifiers to the rules (``rules.survey``, ``rules.from_one_dataset``): both
are allowed for when comparing.

Spelling: a function name is quoted exactly as typed (case kept, quotes kept); keywords
(statement kinds, set operators, clauses, ``CASE``/``CURRENT_DATE``) are given in upper
case, in the words and order the user typed them, whitespace collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from federation.sql.dialect import DUCKDB

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_SPACE = re.compile(r"\s+")
_MAX_TRIES = 24  # candidate fragments parsed for one node, at most
_MAX_WIDEN = 6  # tokens a node's text may be widened by, on either side
_SNIPPET = 60  # characters of a node's text quoted in a message

_OPEN = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSE = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}
_NOT_A_NAME = {TokenType.STRING, TokenType.NUMBER, TokenType.STAR}
# Word-like tokens that precede a ``(`` without being a call: never a function's name.
_NOT_A_CALL = frozenset(
    [
        "IN",
        "VALUES",
        "AS",
        "OVER",
        "USING",
        "ON",
        "AND",
        "OR",
        "NOT",
        "WHERE",
        "FROM",
        "SELECT",
        "BY",
        "WHEN",
        "THEN",
        "ELSE",
    ]
)
_NO_PAREN_FUNCTIONS = frozenset(DUCKDB.parser_class.NO_PAREN_FUNCTIONS)
# Builders that wrap the function they build: the name token is the wrapper's.
_WRAPPERS = (exp.IgnoreNulls, exp.RespectNulls)
_CALLS = (exp.Func, *_WRAPPERS)
_SET_OPERATORS = {TokenType.UNION, TokenType.INTERSECT, TokenType.EXCEPT}


class _Lexed(NamedTuple):
    """A query's tokens, with each bracket's partner and each token's nesting depth."""

    sql: str
    tokens: list[Token]
    partner: dict[int, int]  # index of an opening or closing bracket -> its partner's
    case_end: dict[int, int]  # index of a CASE -> index of its END
    depth: list[int]  # nesting depth of each token (a bracket has its outside's depth)
    by_start: dict[int, int]  # character offset -> index of the token starting there
    by_end: dict[int, int]  # character offset -> index of the token ending there
    budget: list[int]  # tokens still to be parsed in fragments: about two parses' worth

    def raw(self, first: int, last: int) -> str:
        """The user's text from token ``first`` to token ``last``, as typed."""
        return self.sql[self.tokens[first].start : self.tokens[last].end + 1]

    def word(self, i: int) -> str:
        """Token ``i`` as an upper-case keyword, whitespace collapsed."""
        return _SPACE.sub(" ", self.raw(i, i)).upper()


def _lex(sql: str) -> _Lexed | None:
    """The text's tokens, or None if it does not tokenize (it then was never parsed)."""
    try:
        tokens = DUCKDB.tokenize(sql)
    except Exception:  # any tokenizer failure: there are then no words to read back
        return None
    partner: dict[int, int] = {}
    case_end: dict[int, int] = {}
    depth: list[int] = []
    stack: list[int] = []
    cases: list[int] = []
    for i, tok in enumerate(tokens):
        kind = tok.token_type
        if kind in _CLOSE and stack:
            j = stack.pop()
            partner[i], partner[j] = j, i
        depth.append(len(stack))
        if kind in _OPEN:
            stack.append(i)
        elif kind == TokenType.CASE:
            cases.append(i)
        elif kind == TokenType.END and cases:
            case_end[cases.pop()] = i
    by_start = {tok.start: i for i, tok in enumerate(tokens)}
    by_end = {tok.end: i for i, tok in enumerate(tokens)}
    budget = [2 * len(tokens) + 64]
    return _Lexed(sql, tokens, partner, case_end, depth, by_start, by_end, budget)


def _parses_to(lex: _Lexed, first: int, last: int) -> exp.Expr | None:
    """Tokens ``first..last`` parsed alone as one expression, or None if they are not one
    (or if the fragments parsed for this text already add up to about two whole parses)."""
    lex.budget[0] -= last - first + 1
    if lex.budget[0] < 0:
        return None
    try:
        trees = DUCKDB.parser().parse_into(exp.Expr, lex.tokens[first : last + 1], lex.sql)
    except Exception:  # a fragment that is not an expression, whatever the parser says
        return None
    return trees[0] if len(trees) == 1 else None


def _unqualified(fragment: exp.Expr) -> bool:
    """Drop the fragment's ``dataset.`` column qualifiers, as the rules drop the tree's once
    the dataset is known; False if it had none (nothing changed)."""
    changed = False
    for col in fragment.find_all(exp.Column):
        if col.args.get("table") or col.args.get("db"):
            col.set("table", None)
            col.set("db", None)
            changed = True
    return changed


def _same(fragment: exp.Expr | None, node: exp.Expr) -> bool:
    """The fragment is the node (or wraps it, as a builder's IgnoreNulls wraps AnyValue),
    with or without its columns' qualifiers."""
    for _ in range(3):
        if fragment is None:
            return False
        if fragment == node or (_unqualified(fragment) and fragment == node):
            return True
        fragment = fragment.this if isinstance(fragment, _WRAPPERS) else None
    return False


def _position(node: exp.Expr) -> tuple[int, int] | None:
    meta = node._meta  # read without creating an empty dict on every node
    if meta and "start" in meta and "end" in meta:
        return meta["start"], meta["end"]
    return None


def _bounds(node: exp.Expr, inside_only: bool) -> tuple[int, int] | None:
    """First and last character of the positioned nodes of ``node``'s subtree."""
    lo = hi = -1
    for sub in node.walk():
        if inside_only and sub is node:
            continue
        pos = _position(sub)
        if pos is not None:
            lo = pos[0] if lo < 0 else min(lo, pos[0])
            hi = max(hi, pos[1])
    return (lo, hi) if lo >= 0 else None


# --- function calls ------------------------------------------------------------------------


class _Call(NamedTuple):
    name: int  # index of the name token
    last: int  # index of the call's last token (its ``)``, or END, or the name itself)
    paren: bool  # called with parentheses (a function), not a keyword form


def _call_at(lex: _Lexed, i: int) -> _Call | None:
    """The call whose name is token ``i``, if token ``i`` can name one."""
    tokens = lex.tokens
    tok = tokens[i]
    after_dot = i > 0 and tokens[i - 1].token_type == TokenType.DOT
    if i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.L_PAREN:
        named = tok.token_type == TokenType.IDENTIFIER or _WORD.fullmatch(tok.text) is not None
        if not named or tok.token_type in _NOT_A_NAME or tok.text.upper() in _NOT_A_CALL:
            return None
        close = lex.partner.get(i + 1)
        return _Call(i, close, True) if close is not None else None
    if after_dot:
        return None
    if tok.token_type in _NO_PAREN_FUNCTIONS:
        return _Call(i, i, False)
    if i in lex.case_end:
        return _Call(i, lex.case_end[i], False)
    return None


def _find_call(node: exp.Expr, lex: _Lexed) -> _Call | None:
    """The call in the text that ``node`` was parsed from; None if none proves to be it.

    Candidates are the calls whose extent encloses the node's positioned descendants,
    innermost first; the first whose tokens parse alone to a tree equal to ``node`` is it.
    """
    pos = _position(node)
    if pos is not None and pos[0] in lex.by_start:  # the name token, recorded by sqlglot
        call = _call_at(lex, lex.by_start[pos[0]])
        if call is not None and _same(_parses_to(lex, call.name, call.last), node):
            return call
    inner = _bounds(node, inside_only=True)
    candidates: list[_Call] = []
    for i in range(len(lex.tokens)):
        call = _call_at(lex, i)
        if call is None:
            continue
        first, last = lex.tokens[call.name].start, lex.tokens[call.last].end
        if inner is None or (first < inner[0] and last >= inner[1]):
            candidates.append(call)
    candidates.sort(key=lambda c: -lex.tokens[c.name].start)
    for call in candidates[:_MAX_TRIES]:
        if _same(_parses_to(lex, call.name, call.last), node):
            return call
    return None


def _call(node: exp.Expr, sql: str) -> tuple[_Lexed, _Call] | None:
    lex = _lex(sql)
    if lex is None:
        return None
    call = _find_call(node, lex)
    return (lex, call) if call is not None else None


def _named(node: exp.Expr, sql: str) -> str | None:
    """The name token sqlglot recorded on ``node``, if it is one (a ``(`` follows it)."""
    pos = _position(node)
    if pos is not None and sql[pos[1] + 1 :].lstrip().startswith("("):
        return sql[pos[0] : pos[1] + 1]
    return None


def written(node: exp.Expr, sql: str) -> str | None:
    """The name the user typed for the function call ``node``, exactly as typed.

    ``SELECT List(x) FROM t`` gives ``List`` for its ArrayAgg node. None when ``node`` is
    not a call the user named (an operator such as ``||`` or ``::``, a clause) or when its
    text cannot be proved to be the node's.
    """
    if not isinstance(node, _CALLS):
        return None
    named = _named(node, sql)  # free: no tokenizing
    if named is not None:
        return named
    found = _call(node, sql)
    if found is None:
        return None
    lex, call = found
    return lex.raw(call.name, call.name)


# --- a node's text -------------------------------------------------------------------------


def _widened(lex: _Lexed, first: int, last: int) -> tuple[int, int]:
    """``first..last`` grown to whole bracket pairs (each token looked at once)."""
    low, high = first, first - 1  # the tokens looked at so far
    while low > first or high < last:
        i = high + 1 if high < last else low - 1
        high, low = max(high, i), min(low, i)
        j = lex.partner.get(i)
        if j is not None:
            first, last = min(first, j), max(last, j)
    return first, last


def _span(node: exp.Expr, lex: _Lexed) -> tuple[int, int] | None:
    """The first and last token of ``node``'s own text, proved by parsing them alone."""
    bounds = _bounds(node, inside_only=False)
    first = last = -1
    if bounds is not None and bounds[0] in lex.by_start and bounds[1] in lex.by_end:
        first, last = lex.by_start[bounds[0]], lex.by_end[bounds[1]]
    if isinstance(node, _CALLS):
        call = _find_call(node, lex)
        if call is not None:
            first = call.name if first < 0 else min(first, call.name)
            last = max(last, call.last)
    if first < 0:
        return None
    tokens = lex.tokens
    for _ in range(3):  # a qualifier (``t.``) the rules dropped from the tree: still typed
        if first < 2 or tokens[first - 1].token_type != TokenType.DOT:
            break
        if tokens[first - 2].token_type not in (TokenType.VAR, TokenType.IDENTIFIER):
            break
        first -= 2
    first, last = _widened(lex, first, last)
    tries = 0
    # Keywords and types the parser keeps no position for (NOT, -, ::INT, IS NULL, DESC)
    # may stand before or after the positioned tokens: widen by a few, nearest first.
    for total in range(2 * _MAX_WIDEN + 1):
        for left in range(min(total, _MAX_WIDEN) + 1):
            right = total - left
            if right > _MAX_WIDEN or first - left < 0 or last + right >= len(lex.tokens):
                continue
            a, b = _widened(lex, first - left, last + right)
            tries += 1
            if tries > _MAX_TRIES:
                return None
            if _same(_parses_to(lex, a, b), node):
                return a, b
    return None


def _text(node: exp.Expr, lex: _Lexed | None) -> str | None:
    span = _span(node, lex) if lex is not None else None
    if lex is None or span is None:
        return None
    return _SPACE.sub(" ", lex.raw(*span)).strip()[:_SNIPPET]


def text_of(node: exp.Expr, sql: str) -> str:
    """The user's text for ``node`` (whitespace collapsed, at most 60 characters); the
    generated SQL if the text cannot be proved to be the node's."""
    text = _text(node, _lex(sql))
    return text if text is not None else node.sql(dialect=DUCKDB)[:_SNIPPET]


def function_name(node: exp.Expr) -> str:
    """sqlglot's name for a function: the fallback when the user's cannot be found."""
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if isinstance(node, exp.Func) else type(node).__name__


def describe(node: exp.Expr, sql: str) -> str:
    """The phrase a refusal uses for ``node``, in the user's words.

    ``function list()`` for a call, ``CASE`` / ``CURRENT_DATE`` for a keyword form,
    ``a subquery`` for a nested query, and the user's own text (``x || y``, ``a + 1``)
    for anything else; the shape of ``rules._describe``, so either can stand in a message.
    """
    if isinstance(node, exp.Subquery | exp.Query):
        return "a subquery"
    if isinstance(node, exp.Table) and isinstance(node.this, _CALLS):
        node = node.this  # FROM read_csv(...): the function
    if not isinstance(node, _CALLS):
        return text_of(node, sql)
    named = _named(node, sql)
    if named is not None:
        return f"function {named}()"
    lex = _lex(sql)
    call = _find_call(node, lex) if lex is not None else None
    if lex is not None and call is not None:
        name = lex.raw(call.name, call.name)
        return f"function {name}()" if call.paren else lex.word(call.name)
    text = _text(node, lex)  # an operator form: x || y, [1, 2], x::JSON
    return text if text is not None else f"function {function_name(node)}()"


# --- statements ----------------------------------------------------------------------------

_STOP = frozenset({"SELECT", "WITH", "IF", "AS"})
_MAX_WORDS = 5


def _set_operator(lex: _Lexed) -> str | None:
    """The first set operator at the outermost level, with its modifiers, as typed."""
    best: int | None = None
    for i, tok in enumerate(lex.tokens):
        if tok.token_type not in _SET_OPERATORS:
            continue
        if i > 0 and lex.tokens[i - 1].token_type == TokenType.STAR:  # SELECT * EXCEPT (a)
            continue
        if best is None or lex.depth[i] < lex.depth[best]:
            best = i
    if best is None:
        return None
    words = [lex.word(best)]
    i = best + 1
    while i < len(lex.tokens) and lex.word(i) in ("ALL", "DISTINCT"):
        words.append(lex.word(i))
        i += 1
    if i + 1 < len(lex.tokens) and (lex.word(i), lex.word(i + 1)) == ("BY", "NAME"):
        words += ["BY", "NAME"]
    return " ".join(words)


_CTE_PARTS = {TokenType.VAR, TokenType.IDENTIFIER, TokenType.ALIAS, TokenType.COMMA}


def _after_ctes(lex: _Lexed, i: int) -> int:
    """The index of the first token after a leading ``WITH name AS (...), ...`` list."""
    tokens = lex.tokens
    i += 1
    while i < len(tokens) and tokens[i].token_type == TokenType.RECURSIVE:
        i += 1
    while i < len(tokens):
        kind = tokens[i].token_type
        if kind in _OPEN and i in lex.partner:
            i = lex.partner[i] + 1
        elif kind in _CTE_PARTS or lex.word(i) in ("MATERIALIZED", "NOT"):
            i += 1
        else:
            break
    return i


def _is_keyword(tok: Token) -> bool:
    kind = tok.token_type
    if kind in (TokenType.VAR, TokenType.IDENTIFIER, TokenType.STRING, TokenType.NUMBER):
        return False
    return all(_WORD.fullmatch(w) for w in tok.text.split())


def statement_kind(sql: str, tree: exp.Expr) -> str:
    """What a statement that is not one SELECT is, in the user's keywords.

    ``UNION ALL`` / ``INTERSECT`` / ``EXCEPT`` for a set operation; otherwise the
    statement's leading keywords: ``LOAD``, ``INSTALL``, ``ATTACH``, ``COPY``, ``PRAGMA``,
    ``SET``, ``CREATE TABLE``, ``INSERT INTO``, ``DELETE FROM``...
    """
    fallback = type(tree).__name__.upper()
    lex = _lex(sql)
    if lex is None or not lex.tokens:
        return fallback
    if isinstance(tree, exp.SetOperation):
        return _set_operator(lex) or fallback
    if isinstance(tree, exp.Subquery):
        return "a query in parentheses"
    tokens = lex.tokens
    i = 0
    while i < len(tokens) and tokens[i].token_type == TokenType.SEMICOLON:
        i += 1
    if i < len(tokens) and tokens[i].token_type == TokenType.WITH:
        i = _after_ctes(lex, i)  # WITH ... INSERT: the statement is the INSERT
    lead = tokens[i].text.split() if i < len(tokens) else []
    if not lead or not _WORD.fullmatch(lead[0]):
        return "an expression"
    words = [lex.word(i)]
    for j in range(i + 1, min(len(tokens), i + _MAX_WORDS)):
        if not _is_keyword(tokens[j]) or lex.word(j) in _STOP:
            break
        words.append(lex.word(j))
    return " ".join(words)


# --- clauses -------------------------------------------------------------------------------


class _Clause(NamedTuple):
    heads: tuple[tuple[str, ...], ...]  # the word sequences that start the clause
    before: frozenset[str] = frozenset()  # words that may stand before a head
    after: frozenset[str] = frozenset()  # words that may follow a head


_JOIN_KINDS = frozenset(
    [
        "LEFT",
        "RIGHT",
        "FULL",
        "OUTER",
        "INNER",
        "CROSS",
        "NATURAL",
        "SEMI",
        "ANTI",
        "ASOF",
        "POSITIONAL",
        "GLOBAL",
        "ANY",
    ]
)
CLAUSES: dict[str, _Clause] = {
    "joins": _Clause((("JOIN",),), before=_JOIN_KINDS),
    "with_": _Clause((("WITH",),), after=frozenset({"RECURSIVE"})),
    "with": _Clause((("WITH",),), after=frozenset({"RECURSIVE"})),
    "distinct": _Clause((("DISTINCT",),), before=frozenset({"SELECT"}), after=frozenset({"ON"})),
    "qualify": _Clause((("QUALIFY",),)),
    "windows": _Clause((("WINDOW",),)),
    "laterals": _Clause((("LATERAL",),), after=frozenset({"VIEW", "OUTER"})),
    "offset": _Clause((("OFFSET",),)),
    "into": _Clause((("INTO",),), after=frozenset({"TEMP", "TEMPORARY", "UNLOGGED", "TABLE"})),
    "sample": _Clause((("TABLESAMPLE",), ("USING", "SAMPLE"))),
    "pivots": _Clause((("PIVOT",), ("UNPIVOT",))),
    "prewhere": _Clause((("PREWHERE",),)),
    "settings": _Clause((("SETTINGS",),)),
    "connect": _Clause((("CONNECT", "BY"), ("START", "WITH"))),
    "match": _Clause((("MATCH_RECOGNIZE",),)),
    "locks": _Clause(
        (("FOR", "UPDATE"), ("FOR", "SHARE"), ("FOR", "NO", "KEY"), ("FOR", "KEY")),
        after=frozenset({"UPDATE", "SHARE", "NOWAIT", "SKIP", "LOCKED"}),
    ),
    "cluster": _Clause((("CLUSTER", "BY"),)),
    "distribute": _Clause((("DISTRIBUTE", "BY"),)),
    "sort": _Clause((("SORT", "BY"),)),
}
"""How each clause ``rules.no_other_clauses`` refuses may be spelled, by its tree key."""

_FROM_ENDS = frozenset(
    [
        "WHERE",
        "GROUP",
        "HAVING",
        "QUALIFY",
        "WINDOW",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "USING",
        "SELECT",
        "UNION",
    ]
)


def _outer_words(lex: _Lexed) -> list[tuple[str, int]]:
    """The words at the outermost level, each with its token's index (``GROUP BY`` is one
    token and two words); quoted names and strings are not words."""
    words: list[tuple[str, int]] = []
    for i, tok in enumerate(lex.tokens):
        if lex.depth[i] or tok.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
            continue
        if tok.token_type == TokenType.COMMA:
            words.append((",", i))
        else:
            words.extend((w, i) for w in lex.word(i).split())
    return words


def _comma_join(words: Sequence[tuple[str, int]]) -> bool:
    """``FROM a, b``: a comma at the outermost level of FROM."""
    in_from = False
    for word, _ in words:
        if word == "FROM":
            in_from = True
        elif word in _FROM_ENDS:
            in_from = False
        elif word == "," and in_from:
            return True
    return False


def clause(key: str, sql: str) -> str | None:
    """The words the user typed for the clause the tree keeps under ``key``, upper case.

    ``USING SAMPLE`` or ``TABLESAMPLE`` for ``sample``, ``LEFT JOIN`` for ``joins``,
    ``SELECT DISTINCT ON`` for ``distinct``, ``WITH RECURSIVE`` for ``with``. None if the
    key is not a clause of ``CLAUSES`` or its words are not at the statement's outermost
    level (the caller keeps its own name for it).
    """
    spelling = CLAUSES.get(key)
    lex = _lex(sql)
    if spelling is None or lex is None:
        return None
    words = _outer_words(lex)
    plain = [w for w, _ in words]
    for start in range(len(plain)):
        for head in spelling.heads:
            if tuple(plain[start : start + len(head)]) != head:
                continue
            first, last = start, start + len(head) - 1
            while first > 0 and plain[first - 1] in spelling.before:
                first -= 1
            while last + 1 < len(plain) and plain[last + 1] in spelling.after:
                last += 1
            return " ".join(plain[first : last + 1])
    if key == "joins" and _comma_join(words):
        return "a comma in FROM (a join)"
    if key == "offset" and "LIMIT" in plain:
        at = plain.index("LIMIT")
        if "," in plain[at : at + 4]:
            return "an offset in LIMIT (LIMIT offset, count)"
    return None
