"""Compile a `SearchSpec` to SQL, once for both backends.

Shape of a page query:

    SELECT r.rid, r.seq [, sort keys] FROM resources r
    WHERE r.rtype = ? AND r.deleted = ?
      AND r.rid IN (<the most selective term, straight from its index>)
      AND EXISTS (<every other term, probed by (rtype, rid)>) ...
      AND <keyset: after the last row of the previous page>
    ORDER BY <sort keys>, r.rid LIMIT ?

Every index subquery is keyed by (rtype, param, ...) or (rtype, rid), the prefixes of the
schema's indexes, so lookups never scan a table. Text is compared in binary (code point)
order on both backends (`COLLATE "C"` on PostgreSQL; SQLite's default), so sorting,
prefix ranges and paging agree byte for byte. Statements use `?` placeholders; the caller
renders them for its driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from phivault.store.blind_sql import blind_probe, blind_source
from phivault.store.compartment_lists import CompartmentSets, compartment_predicate
from phivault.store.search_spec import (
    EXACT_ID,
    EXACT_REFERENCE,
    JOIN,
    SCAN,
    Atom,
    ChainMatch,
    Cmp,
    CompartmentMatch,
    IdMatch,
    IndexMatch,
    ReverseMatch,
    Row,
    SearchSpec,
    SortKey,
    Term,
)
from phivault.store.sql import BLIND, INDEX_TABLES, VERSION_COLUMNS

TEXT_MAX = chr(0x10FFFF)  # sorts after every other text in code point order
NUM_MAX = 1e308
_MID = (
    "(CASE WHEN {a}.lo IS NULL THEN {a}.hi WHEN {a}.hi IS NULL THEN {a}.lo "
    "ELSE ({a}.lo + {a}.hi) / 2 END)"
)
_TEXT_COLUMNS = frozenset({"system", "value", "text"})


@dataclass(frozen=True, slots=True)
class Dialect:
    postgres: bool

    @property
    def probe(self) -> str:
        """Ends an EXISTS probe. On PostgreSQL, OFFSET 0 keeps the probe a per-candidate
        check instead of a join the planner may reorder: without fresh statistics (after
        a bulk import, before ANALYZE) it would otherwise start from a broad term (a common
        code) rather than the selective one chosen here (the patient), and be 10-100x
        slower. SQLite always plans this way."""
        return " OFFSET 0" if self.postgres else ""

    def text(self, expr: str) -> str:
        """`expr` compared and ordered in code point order."""
        return f'{expr} COLLATE "C"' if self.postgres else expr

    def contains(self, expr: str) -> str:
        return f"strpos({expr}, ?) > 0" if self.postgres else f"instr({expr}, ?) > 0"

    def like(self, expr: str, pieces: Sequence[str | None]) -> tuple[str, str]:
        """A case-sensitive wildcard match; None pieces match any run of characters."""
        if self.postgres:
            special = {"\\": "\\\\", "%": "\\%", "_": "\\_"}
            pattern = "".join(
                "%" if p is None else "".join(special.get(ch, ch) for ch in p) for p in pieces
            )
            return f"{expr} LIKE ? ESCAPE '\\'", pattern
        escape = {"*": "[*]", "?": "[?]", "[": "[[]"}
        pattern = "".join(
            "*" if p is None else "".join(escape.get(ch, ch) for ch in p) for p in pieces
        )
        return f"{expr} GLOB ?", pattern


def prefix_upper(text: str) -> str | None:
    """The least string greater than every string that starts with `text`, if any."""
    chars = list(text)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not text
                nxt = 0xE000
            chars[-1] = chr(nxt)
            return "".join(chars)
        chars.pop()
    return None


def _table(kind: str) -> str:
    spec = INDEX_TABLES.get(kind)
    if spec is None:
        raise ValueError("unknown index kind")
    return spec[0]


_KEPT_TERMS = 256
# (id(term), alias, PostgreSQL, with sets) -> (that term, its SQL, its parameters, the
# compartment sets it names): see Compiler.term. The Term is held, so its id() cannot be
# reused while it is in here; a set id always stands for one list (compartment_lists).
_kept_terms: dict[
    tuple[int, str, bool, bool], tuple[Term, str, tuple[Any, ...], CompartmentSets]
] = {}


class Compiler:
    """Builds one statement; parameters are collected in the order they appear.

    With `sets` (a dict to fill), a long compartment list is not written into the
    statement: it is tested against a table of the connection's own, named by the list's
    id (`x IN temp.phivault_set_<id>`), and added to `sets` (id -> list); the caller
    loads every set named there into the connection before running the statement
    (sqlite.py). An IN list of hundreds of values is built into a temporary index on
    every execution; the set's table is built once per connection and probed by its
    primary key, without a subquery per row."""

    def __init__(self, dialect: Dialect, sets: CompartmentSets | None = None) -> None:
        self.d = dialect
        self.params: list[Any] = []
        self._aliases = 0
        self.sets = sets

    def alias(self, base: str) -> str:
        self._aliases += 1
        return f"{base}{self._aliases}"

    def bind(self, *values: Any) -> None:
        self.params.extend(values)

    # -- conditions on one resource row -----------------------------------------------------------
    def where(self, rtype: str, terms: Sequence[Term], alias: str) -> str:
        """`alias.rtype = rtype`, live, and every term (ANDed)."""
        self.bind(rtype, False)
        parts = [f"{alias}.rtype = ?", f"{alias}.deleted = ?"]
        driver = _driver(terms)
        for term in terms:
            if term is driver:
                parts.append(f"{alias}.rid IN ({self.source(rtype, term)})")
            else:
                parts.append(self.term(rtype, term, alias))
        return " AND ".join(parts)

    def source(self, rtype: str, term: Term) -> str:
        """A SELECT of the ids of `rtype` resources matching a (positive) term."""
        return " UNION ALL ".join(self.atom_source(rtype, atom) for atom in term.any_of)

    def atom_source(self, rtype: str, atom: Atom) -> str:
        i = self.alias("i")
        if isinstance(atom, CompartmentMatch):
            self.bind(rtype)
            head = f"SELECT {i}.rid FROM resources {i} WHERE {i}.rtype = ? AND "
            return head + self.compartment(atom, i)
        if isinstance(atom, IdMatch):
            if not atom.rids:
                return f"SELECT {i}.rid FROM resources {i} WHERE 1 = 0"
            self.bind(rtype, *atom.rids)
            return (
                f"SELECT {i}.rid FROM resources {i} WHERE {i}.rtype = ? AND {i}.rid IN "
                f"({_marks(len(atom.rids))})"
            )
        if isinstance(atom, IndexMatch) and atom.kind == BLIND:
            f = self.alias("f")
            return blind_source(self.d.postgres, _blind_tokens(atom.rows), rtype, i, f, self.bind)
        if isinstance(atom, IndexMatch):
            table = _table(atom.kind)
            if len(atom.rows) > 1 and not _value_list(atom.rows):
                return " UNION ALL ".join(
                    self.atom_source(rtype, IndexMatch(atom.kind, atom.param, (row,)))
                    for row in atom.rows
                )
            self.bind(rtype, atom.param)
            sql = f"SELECT {i}.rid FROM {table} {i} WHERE {i}.rtype = ? AND {i}.param = ?"
            return sql + self.rows(atom.rows, i)
        if isinstance(atom, ChainMatch):
            self.bind(rtype, atom.param, atom.target)
            t = self.alias("t")
            head = (
                f"SELECT {i}.rid FROM idx_reference {i} WHERE {i}.rtype = ? AND {i}.param = ? "
                f"AND {i}.system = ? AND {i}.value IN (SELECT {t}.rid FROM resources {t} WHERE "
            )
            return head + self.where(atom.target, atom.where, t) + ")"
        self.bind(atom.source, atom.param, rtype)
        s = self.alias("s")
        head = (
            f"SELECT {i}.value FROM idx_reference {i} WHERE {i}.rtype = ? AND {i}.param = ? "
            f"AND {i}.system = ? AND {i}.rid IN (SELECT {s}.rid FROM resources {s} WHERE "
        )
        return head + self.where(atom.source, atom.where, s) + ")"

    def term(self, rtype: str, term: Term, alias: str) -> str:
        """One term's condition on `alias`. A term of compartment lists only (how the
        access policy restricts a caller, one Term object per reach, met in every page
        and count of every search) is compiled once and replayed (`_kept_terms`)."""
        key = (id(term), alias, self.d.postgres, self.sets is not None)
        kept = _kept_terms.get(key)
        if kept is None or kept[0] is not term:
            if not term.any_of or not all(type(a) is CompartmentMatch for a in term.any_of):
                return self._term(rtype, term, alias)
            alone = Compiler(self.d, None if self.sets is None else {})
            sql = alone._term(rtype, term, alias)  # compartment lists name no alias
            kept = (term, sql, tuple(alone.params), alone.sets or {})
            if len(_kept_terms) >= _KEPT_TERMS:
                _kept_terms.clear()
            _kept_terms[key] = kept
        _, sql, params, sets = kept
        self.params.extend(params)
        if self.sets is not None:
            self.sets.update(sets)
        return sql

    def _term(self, rtype: str, term: Term, alias: str) -> str:
        found = " OR ".join(self.atom(rtype, atom, alias) for atom in term.any_of)
        found = f"({found})" if found else "1 = 0"
        return f"NOT {found}" if term.negate else found

    def compartment(self, atom: CompartmentMatch, alias: str) -> str:
        """In one of the compartments (a NULL compartment is in none), or unassigned."""
        return compartment_predicate(atom, alias, self.sets, self.bind)

    def atom(self, rtype: str, atom: Atom, alias: str) -> str:
        i = self.alias("i")
        if isinstance(atom, CompartmentMatch):
            return self.compartment(atom, alias)
        if isinstance(atom, IdMatch):
            if not atom.rids:
                return "1 = 0"
            self.bind(*atom.rids)
            return f"{alias}.rid IN ({_marks(len(atom.rids))})"
        if isinstance(atom, IndexMatch) and atom.kind == BLIND:
            tokens = _blind_tokens(atom.rows)
            return blind_probe(self.d.postgres, tokens, rtype, i, alias, self.d.probe, self.bind)
        if isinstance(atom, IndexMatch):
            self.bind(rtype, atom.param)
            sql = (
                f"EXISTS (SELECT 1 FROM {_table(atom.kind)} {i} WHERE {i}.rtype = ? "
                f"AND {i}.rid = {alias}.rid AND {i}.param = ?"
            )
            return sql + self.rows(atom.rows, i) + self.d.probe + ")"
        if isinstance(atom, ChainMatch):
            self.bind(rtype, atom.param, atom.target)
            t = self.alias("t")
            head = (
                f"EXISTS (SELECT 1 FROM idx_reference {i} WHERE {i}.rtype = ? AND {i}.rid = "
                f"{alias}.rid AND {i}.param = ? AND {i}.system = ? AND {i}.value IN "
                f"(SELECT {t}.rid FROM resources {t} WHERE "
            )
            return head + self.where(atom.target, atom.where, t) + ")" + self.d.probe + ")"
        assert isinstance(atom, ReverseMatch)
        self.bind(rtype, atom.param, atom.source)
        s = self.alias("s")
        head = (
            f"EXISTS (SELECT 1 FROM idx_reference {i} WHERE {i}.value = {alias}.rid AND "
            f"{i}.system = ? AND {i}.param = ? AND {i}.rtype = ? AND {i}.rid IN "
            f"(SELECT {s}.rid FROM resources {s} WHERE "
        )
        return head + self.where(atom.source, atom.where, s) + ")" + self.d.probe + ")"

    # -- one index row --------------------------------------------------------------------------
    def rows(self, rows: tuple[Row, ...], alias: str) -> str:
        if not rows:
            return ""
        values = _value_list(rows)
        if values is not None and len(rows) > 1:
            self.bind(*values)
            return f" AND {alias}.value IN ({_marks(len(values))})"
        parts = [self.row(row, alias) for row in rows]
        return " AND (" + " OR ".join(parts) + ")" if len(parts) > 1 else " AND " + parts[0]

    def row(self, row: Row, alias: str) -> str:
        if not row:
            return "1 = 1"
        found = " AND ".join(self.cmp(c, alias) for c in row)
        return f"({found})" if len(row) > 1 else found

    def cmp(self, c: Cmp, alias: str) -> str:
        expr = _MID.format(a=alias) if c.column == "mid" else f"{alias}.{c.column}"
        op = c.op
        if op == "=":
            self.bind(c.value)
            return f"{expr} = ?"
        if op in ("<", "<=", ">", ">="):
            self.bind(c.value)
            found = f"{expr} {op} ?"
            return f"({expr} IS NULL OR {found})" if c.null_true else found
        if op == "in":
            values = tuple(c.value)
            if not values:
                return "1 = 0"
            self.bind(*values)
            return f"{expr} IN ({_marks(len(values))})"
        if op == "prefix":
            text = self.d.text(expr)
            upper = prefix_upper(c.value)
            if upper is None:
                self.bind(c.value)
                return f"{text} >= ?"
            self.bind(c.value, upper)
            return f"({text} >= ? AND {text} < ?)"
        if op == "contains":
            self.bind(c.value)
            return self.d.contains(expr)
        if op == "iprefix":
            self.bind(len(c.value), c.value)
            return f"substr(lower({expr}), 1, ?) = ?"
        if op == "like":
            sql, pattern = self.d.like(expr, c.value)
            self.bind(pattern)
            return sql
        assert op == "notnull"
        return f"{expr} IS NOT NULL"

    # -- sorting and paging -----------------------------------------------------------------------
    def sort_key(self, rtype: str, key: SortKey, alias: str) -> str:
        if key.param == "_id":
            return self.d.text(f"{alias}.rid")
        if key.param == "_lastUpdated":
            return self.d.text(f"{alias}.last_updated")
        i = self.alias("i")
        text = key.column in _TEXT_COLUMNS
        column = self.d.text(f"{i}.{key.column}") if text else f"{i}.{key.column}"
        agg = "MAX" if key.descending else "MIN"
        self.bind(rtype, key.param)
        missing: Any = (
            ("" if key.descending else TEXT_MAX)
            if text
            else (-NUM_MAX if key.descending else NUM_MAX)
        )
        sub = (
            f"(SELECT {agg}({column}) FROM {_table(key.kind)} {i} WHERE {i}.rtype = ? "
            f"AND {i}.rid = {alias}.rid AND {i}.param = ?)"
        )
        self.bind(missing)  # missing values sort last either way
        return f"COALESCE({sub}, ?)"

    def keyset(self, columns: Sequence[tuple[str, bool]], after: Sequence[Any]) -> str:
        """Rows strictly after `after` in the order of `columns` ((expr, descending))."""
        ors: list[str] = []
        for n in range(len(columns)):
            ands: list[str] = []
            for m in range(n):
                ands.append(f"{columns[m][0]} = ?")
                self.bind(after[m])
            expr, descending = columns[n]
            ands.append(f"{expr} {'<' if descending else '>'} ?")
            self.bind(after[n])
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + " OR ".join(ors) + ")"


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _blind_tokens(rows: tuple[Row, ...]) -> list[bytes]:
    """The 16-byte tokens of a blind prefix match: every row is `value = <hex token>`
    (the token is keyed by its parameter, so the parameter needs no column)."""
    values = _value_list(rows)
    if not values:
        raise ValueError("a blind index match is one or more tokens")
    return [bytes.fromhex(v) for v in values]


def _value_list(rows: tuple[Row, ...]) -> list[Any] | None:
    """The values when every row is just `value = x` (then one IN list serves them all)."""
    values: list[Any] = []
    for row in rows:
        if len(row) != 1 or row[0].column != "value" or row[0].op != "=":
            return None
        values.append(row[0].value)
    return values


def _score(term: Term) -> int:
    worst = EXACT_ID
    for atom in term.any_of:
        if isinstance(atom, IdMatch):
            score = EXACT_ID
        elif isinstance(atom, CompartmentMatch):
            # One patient is as selective as a reference; many, or "none", are not.
            one = len(atom.compartments) == 1 and not atom.unassigned
            score = EXACT_REFERENCE if one else SCAN
        elif isinstance(atom, IndexMatch):
            score = atom.selectivity if atom.rows else SCAN
        else:
            score = JOIN
        worst = max(worst, score)
    return worst


def _driver(terms: Sequence[Term]) -> Term | None:
    """The term to read straight from its index; the others are probed per candidate."""
    best: Term | None = None
    best_score = SCAN
    for term in terms:
        if term.negate or not term.any_of:
            continue
        score = _score(term)
        if score < best_score:
            best, best_score = term, score
    return best


def page_sql(
    spec: SearchSpec, dialect: Dialect, sets: CompartmentSets | None = None
) -> tuple[str, list[Any]]:
    """(sql, params) of one page: rid, seq and the sort keys, limit + 1 rows. `sets`: see
    Compiler."""
    sql, params, _ = _page(spec, dialect, sets)
    return sql, params


def page_versions_sql(
    spec: SearchSpec, dialect: Dialect, sets: CompartmentSets | None = None
) -> tuple[str, list[Any]]:
    """(sql, params) of one page with each row's stored version: rid, seq, the sort keys,
    then VERSION_COLUMNS; limit + 1 rows in the page's order. One statement (one round
    trip on PostgreSQL) instead of the page and then its bodies by seq; the page keeps
    its LIMIT inside, so only its rows are joined to `versions`. `sets`: see Compiler."""
    sql, params, order = _page(spec, dialect, sets)
    names = "".join(f", p.k{n}" for n in range(len(spec.sort)))
    columns = ", ".join("v." + c.strip() for c in VERSION_COLUMNS.split(","))
    return (
        f"SELECT p.rid, p.seq{names}, {columns} FROM ({sql}) p "
        f"JOIN versions v ON v.seq = p.seq ORDER BY {order('p')}",
        params,
    )


def _page(
    spec: SearchSpec, dialect: Dialect, sets: CompartmentSets | None
) -> tuple[str, list[Any], Callable[[str], str]]:
    """The page statement, its parameters, and its ORDER BY over the columns of a query
    that selects from it under the alias given."""
    c = Compiler(dialect, sets)
    descending = [k.descending != spec.backward for k in spec.sort]
    rid_desc = spec.backward
    if not spec.sort:
        where = c.where(spec.rtype, spec.terms, "r")
        rid = dialect.text("r.rid")
        if spec.after is not None:
            where += " AND " + c.keyset([(rid, rid_desc)], spec.after[-1:])
        c.bind(spec.limit + 1)

        def by_rid(alias: str) -> str:
            text = dialect.text(f"{alias}.rid")
            return f"{text} DESC" if rid_desc else text

        return (
            f"SELECT r.rid, r.seq FROM resources r WHERE {where} ORDER BY {by_rid('r')} LIMIT ?",
            c.params,
            by_rid,
        )
    keys = [c.sort_key(spec.rtype, key, "r") for key in spec.sort]
    selected = ", ".join(f"{k} AS k{n}" for n, k in enumerate(keys))
    where = c.where(spec.rtype, spec.terms, "r")
    inner = f"SELECT r.rid AS rid, r.seq AS seq, {selected} FROM resources r WHERE {where}"
    text_key = [k.param in ("_id", "_lastUpdated") or k.column in _TEXT_COLUMNS for k in spec.sort]

    def ordered(alias: str) -> list[tuple[str, bool]]:
        """The sort keys, then the id, as columns of `alias` (the page's inner query,
        or a query over the page's output): (expression, descending)."""
        found = [
            (dialect.text(f"{alias}.k{n}") if text_key[n] else f"{alias}.k{n}", descending[n])
            for n in range(len(keys))
        ]
        return [*found, (dialect.text(f"{alias}.rid"), rid_desc)]

    def by_keys(alias: str) -> str:
        return ", ".join(f"{expr} DESC" if desc else expr for expr, desc in ordered(alias))

    outer = ""
    if spec.after is not None:
        outer = " WHERE " + c.keyset(ordered("t"), spec.after)
    c.bind(spec.limit + 1)

    names = ", ".join(f"t.k{n}" for n in range(len(keys)))
    return (
        f"SELECT t.rid, t.seq, {names} FROM ({inner}) t{outer} ORDER BY {by_keys('t')} LIMIT ?",
        c.params,
        by_keys,
    )


def count_sql(
    spec: SearchSpec, dialect: Dialect, cap: int | None, sets: CompartmentSets | None = None
) -> tuple[str, list[Any]]:
    c = Compiler(dialect, sets)
    where = c.where(spec.rtype, spec.terms, "r")
    if cap is None:
        return f"SELECT COUNT(*) FROM resources r WHERE {where}", c.params
    c.bind(cap)
    return (
        f"SELECT COUNT(*) FROM (SELECT 1 AS one FROM resources r WHERE {where} LIMIT ?) c",
        c.params,
    )


def references_from_sql(
    rtype: str, rids: Sequence[str], params: Sequence[str] | None, limit: int | None = None
) -> tuple[str, list[Any]]:
    sql = (
        "SELECT rid, param, system, value FROM idx_reference WHERE rtype = ? AND rid IN "
        f"({_marks(len(rids))}) AND system IS NOT NULL AND value IS NOT NULL"
    )
    args: list[Any] = [rtype, *rids]
    if params is not None:
        sql += f" AND param IN ({_marks(len(params))})"
        args.extend(params)
    return _limited(sql, args, limit)


def references_to_sql(
    source: str,
    params: Sequence[str] | None,
    target_type: str,
    target_ids: Sequence[str],
    limit: int | None = None,
) -> tuple[str, list[Any]]:
    sql = (
        f"SELECT rid, param, system, value FROM idx_reference WHERE value IN "
        f"({_marks(len(target_ids))}) AND system = ? AND rtype = ?"
    )
    args: list[Any] = [*target_ids, target_type, source]
    if params is not None:
        sql += f" AND param IN ({_marks(len(params))})"
        args.extend(params)
    return _limited(sql, args, limit)


def _limited(sql: str, args: list[Any], limit: int | None) -> tuple[str, list[Any]]:
    if limit is None:
        return sql, args
    return sql + " LIMIT ?", [*args, limit]
