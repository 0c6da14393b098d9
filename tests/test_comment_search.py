"""Comment search (issue #10): ``GET /nps?search=`` through the comment index, the same answers on
SQLite (FTS5 kept by triggers) and PostgreSQL (a GIN index over ``npsd_comment_words``).

Every test runs on both databases; what a search finds is written once, so both must agree.
"""

# ruff: noqa: RUF001  (look-alike letters and punctuation are what these tests are about)

from __future__ import annotations

import importlib
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import bindparam, func, text

from conftest import Tenant, TestDatabase, assert_error, pg_schema, post_nps
from mail_helpers import (
    Sink,
    invite_one,
    local,
    make_survey,
    part,
    records_of,
    run_jobs,
    score_links,
    unique_email,
)
from npsd.kit.db import Database
from npsd.kit.models import SEARCH_INDEX_OBJECTS, Base, declared_by_models
from npsd.migrations import alembic_config, upgrade
from npsd.records import queries
from npsd.records.queries import ListQuery, count_records, filtered, list_records, ordered, search_words

MIGRATION = importlib.import_module("npsd.migrations.versions.0005_comment_search")


def search(client: Any, tenant: Tenant, words: str, **params: Any) -> list[str]:
    """The comments of the tenant's answers that ``GET /nps?search=`` finds (any age), sorted."""
    r = client.get(
        "/nps",
        params={"search": words, "npsExpiryDay": 0, "limit": 10000, **params},
        headers=tenant.viewer,
    )
    assert r.status_code == 200, r.text
    return sorted(row["comment"] for row in r.json())


def add(client: Any, tenant: Tenant, *comments: str | None) -> list[str]:
    """One answer per comment through ``PUT /nps`` (a bulk create); their ids, in order."""
    items = [{"email": unique_email("s"), "score": 7, "comment": c} for c in comments]
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return [keys["_id"] for keys in r.json()["insertsKeys"]]


def fts_in_step(database: TestDatabase) -> None:
    """On SQLite, FTS5's own check that the index holds exactly the comments of nps_record."""
    if database.kind == "sqlite":
        with database.db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO nps_record_fts (nps_record_fts, rank) VALUES ('integrity-check', 1)"
            )


# ----------------------------------------------------------------------------------- what matches


def test_words_match_whole_or_as_prefixes(client: Any, tenant: Tenant) -> None:
    add(
        client,
        tenant,
        "Delivery was late",
        "Very good delivery",
        "Great service, fast delivery!",
        "Servicio excelente",
        "Nothing to add",
        None,
    )
    everything = ["Delivery was late", "Great service, fast delivery!", "Very good delivery"]
    assert search(client, tenant, "delivery") == everything
    assert search(client, tenant, "deliv") == everything  # the beginning of a word
    assert search(client, tenant, "very") == ["Very good delivery"]  # never the middle of one
    assert search(client, tenant, "livery") == []
    assert search(client, tenant, "service") == ["Great service, fast delivery!"]
    assert search(client, tenant, "servic") == ["Great service, fast delivery!", "Servicio excelente"]
    assert search(client, tenant, "deliveryman") == []


def test_every_word_must_match_in_any_order(client: Any, tenant: Tenant) -> None:
    add(client, tenant, "Delivery was late", "Late again", "Fast delivery")
    assert search(client, tenant, "delivery late") == ["Delivery was late"]
    assert search(client, tenant, "late   delivery") == ["Delivery was late"]
    assert search(client, tenant, "late late deliv") == ["Delivery was late"]
    assert search(client, tenant, "la lat late") == ["Delivery was late", "Late again"]
    assert search(client, tenant, "delivery late never") == []


def test_case_and_diacritics_do_not_matter(client: Any, tenant: Tenant) -> None:
    add(
        client,
        tenant,
        "L'équipe est formidable",
        "ÜBERSICHT und Größe",
        "Straße gesperrt",
        "STRASSE frei",
        "niño feliz",
        "Façon naïve",
        "ŒUVRE d'art",
        "Ærlig talt",
        "Crème brûlée",
        "Cafe\u0301 noir",  # the é written as e + combining acute
        "ΚΑΛΗ εξυπηρέτηση",
        "Отличный сервис",
    )
    assert search(client, tenant, "equipe") == ["L'équipe est formidable"]
    assert search(client, tenant, "ÉQUIPE") == ["L'équipe est formidable"]
    assert search(client, tenant, "Équi formid") == ["L'équipe est formidable"]
    assert search(client, tenant, "ubersicht") == ["ÜBERSICHT und Größe"]
    assert search(client, tenant, "über") == ["ÜBERSICHT und Größe"]
    assert search(client, tenant, "grösse") == []  # ß is a letter of its own: never "ss"
    assert search(client, tenant, "GROßE") == ["ÜBERSICHT und Größe"]
    assert search(client, tenant, "straße") == ["Straße gesperrt"]
    assert search(client, tenant, "STRAẞE") == ["Straße gesperrt"]  # capital sharp s
    assert search(client, tenant, "strasse") == ["STRASSE frei"]
    assert search(client, tenant, "NIÑO") == ["niño feliz"]
    assert search(client, tenant, "nino") == ["niño feliz"]
    assert search(client, tenant, "facon naive") == ["Façon naïve"]
    assert search(client, tenant, "œuvre") == ["ŒUVRE d'art"]
    assert search(client, tenant, "oeuvre") == []
    assert search(client, tenant, "ærlig") == ["Ærlig talt"]
    assert search(client, tenant, "creme brulee") == ["Crème brûlée"]
    assert search(client, tenant, "café") == ["Cafe\u0301 noir"]
    assert search(client, tenant, "cafe") == ["Cafe\u0301 noir"]
    assert search(client, tenant, "καλη") == ["ΚΑΛΗ εξυπηρέτηση"]
    assert search(client, tenant, "εξυπηρέτ") == ["ΚΑΛΗ εξυπηρέτηση"]
    assert search(client, tenant, "ОТЛИЧНЫЙ") == ["Отличный сервис"]


def test_punctuation_and_symbols_only_separate_words(client: Any, tenant: Tenant) -> None:
    add(
        client,
        tenant,
        "Write to jane@acme.io please",
        "e-mail support: 3.5/5",
        "great😀product",
        "«Génial»—vraiment",
        "snake_case_name",
        "tab\tseparated\nlines",
        "it’s “quoted”",
    )
    assert search(client, tenant, "acme") == ["Write to jane@acme.io please"]
    assert search(client, tenant, "jane@acme.io") == ["Write to jane@acme.io please"]
    assert search(client, tenant, "mail") == ["e-mail support: 3.5/5"]
    assert search(client, tenant, "e-mail") == ["e-mail support: 3.5/5"]
    assert search(client, tenant, "3.5") == ["e-mail support: 3.5/5"]
    assert search(client, tenant, "product") == ["great😀product"]
    assert search(client, tenant, "great product") == ["great😀product"]
    assert search(client, tenant, "genial vraiment") == ["«Génial»—vraiment"]
    assert search(client, tenant, "case") == ["snake_case_name"]
    assert search(client, tenant, "separated lines") == ["tab\tseparated\nlines"]
    assert search(client, tenant, "quoted") == ["it’s “quoted”"]
    assert search(client, tenant, '"quoted"') == ["it’s “quoted”"]


def test_long_words_are_found_by_their_beginning(client: Any, tenant: Tenant) -> None:
    long_word = "x" * 300
    huge = "y" * 5000  # more than a PostgreSQL lexeme holds: stored all the same
    add(client, tenant, f"see {long_word}", f"blob {huge}")
    assert search(client, tenant, "x" * 200) == [f"see {long_word}"]
    assert search(client, tenant, "see " + "x" * 196) == [f"see {long_word}"]
    assert search(client, tenant, "y" * 200) == [f"blob {huge}"]


# --------------------------------------------------------------------------------- hostile input

HOSTILE = [
    '"',
    "'",
    "''",
    "NEAR(",
    "NEAR(a b)",
    "a NEAR/2 b",
    "a:*",
    ":*",
    "*",
    "(",
    ")(",
    "AND",
    "OR",
    "NOT",
    "a OR b",
    "a AND NOT b",
    "-a",
    "^a",
    "+a",
    "{comment}: a",
    "comment:a",
    "nps_record_fts:a",
    "\\",
    "\\\\'",
    "a' OR '1'='1",
    "'; DROP TABLE nps_record; --",
    "%",
    "_",
    "%_%",
    "&|!<->",
    "a & b | !c <-> d",
    "'a':*",
    "a:* & b",
    "$$",
    "$fn$",
    "/*",
    "\u0301",
    "\u0301\u0301 a\u0301",
    "\u200b",
    "\ufeff",
    "😀",
    "﷽",
    "ß" * 200,
    "a " * 100,
    "a" * 200,
    "é" * 200,
    "\U0001f600" * 200,
    "\t\n\r",
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_search_is_text_never_syntax(client: Any, tenant: Tenant, query: str) -> None:
    r = client.get("/nps", params={"search": query, "npsExpiryDay": 0}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    export = client.get("/nps/export", params={"search": query, "format": "json"}, headers=tenant.viewer)
    assert export.status_code == 200, export.text


def test_operators_are_plain_words(client: Any, tenant: Tenant) -> None:
    add(client, tenant, "near the office", "and or not", "a:b", "nothing else")
    assert search(client, tenant, "NEAR(") == ["near the office"]
    assert search(client, tenant, "AND OR NOT") == ["and or not"]
    assert search(client, tenant, "NOT") == ["and or not", "nothing else"]
    assert search(client, tenant, "a:*") == ["a:b", "and or not"]
    assert search(client, tenant, "'; DROP TABLE nps_record; --") == []
    assert len(search(client, tenant, "")) == 4


def test_nul_and_overlong_searches_are_400_naming_search(client: Any, tenant: Tenant) -> None:
    assert_error(client.get("/nps", params={"search": "a\x00b"}, headers=tenant.viewer), 400, "search")
    assert_error(client.get("/nps", params={"search": "a" * 201}, headers=tenant.viewer), 400, "search")
    assert_error(
        client.get("/nps/export", params={"search": "a" * 201, "format": "csv"}, headers=tenant.viewer),
        400,
        "search",
    )
    assert client.get("/nps", params={"search": "a" * 200}, headers=tenant.viewer).status_code == 200


@pytest.mark.parametrize("query", ["", "   ", "!!!", '"', "\u0301", "—", "😀"])
def test_a_search_without_words_filters_nothing(client: Any, tenant: Tenant, query: str) -> None:
    add(client, tenant, "first", None, "")
    r = client.get("/nps", params={"search": query, "npsExpiryDay": 0}, headers=tenant.viewer)
    assert r.status_code == 200 and len(r.json()) == 3


def test_search_words_split_as_the_index_does() -> None:
    assert search_words(None) == [] and search_words("") == [] and search_words(" -- ") == []
    assert search_words("L'équipe, e-mail: 3.5!") == ["L", "équipe", "e", "mail", "3", "5"]
    assert search_words("late late LATE") == ["late", "LATE"]
    assert search_words("\u0301 a\u0301") == ["a\u0301"]  # marks alone are no word


# ------------------------------------------------------------------------------------- isolation


def test_another_tenants_comments_are_never_found(client: Any, tenant: Tenant, other: Tenant) -> None:
    mine = add(client, tenant, "Secret roadmap shared")
    add(client, other, "Secret roadmap leaked", "secret plans")
    r = client.get("/nps", params={"search": "secret", "npsExpiryDay": 0}, headers=tenant.viewer)
    assert [x["_id"] for x in r.json()] == mine
    r = client.get("/nps/export", params={"search": "roadmap", "format": "json"}, headers=tenant.viewer)
    assert [x["_id"] for x in r.json()] == mine
    assert search(client, tenant, "leaked") == [] and search(client, tenant, "plans") == []
    assert search(client, other, "shared") == []


# ------------------------------------------------------------------- with the list's other filters


def test_search_combines_with_filters_paging_export_and_count(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    ids = add(client, tenant, *[f"Billing issue number {i}" for i in range(7)], "billing fine", "other")
    for n, record_id in enumerate(ids[:7]):
        r = client.put(f"/nps/{record_id}", json={"score": 10 if n % 2 else 2}, headers=tenant.editor)
        assert r.status_code == 200, r.text
    params = {"search": "billing issue", "npsExpiryDay": 0}
    detractors = client.get("/nps", params={**params, "scoreType": "detractor"}, headers=tenant.viewer).json()
    assert sorted(x["_id"] for x in detractors) == sorted(ids[0:7:2])
    page = client.get(
        "/nps", params={**params, "sort": "comment", "limit": 3, "offset": 2}, headers=tenant.viewer
    )
    assert [x["comment"] for x in page.json()] == [f"Billing issue number {i}" for i in (2, 3, 4)]
    export = client.get("/nps/export", params={**params, "format": "json"}, headers=tenant.viewer)
    assert sorted(x["_id"] for x in export.json()) == sorted(ids[:7])
    with database.db.transaction(write=False) as session:
        q = ListQuery(search="billing issue", expiry_days=None)
        assert count_records(session, tenant.org_id, q) == 7
        assert count_records(session, tenant.org_id, ListQuery(search="billing", expiry_days=None)) == 8
        assert count_records(session, tenant.org_id, ListQuery(expiry_days=None)) == 9
        assert count_records(session, tenant.org_id, ListQuery(search="BILLING", score_type="promoter")) == 3
        assert len(list_records(session, tenant.org_id, q)) == 7


# --------------------------------------------------------------------- every write path keeps step


def test_post_put_bulk_and_delete_keep_the_index_in_step(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    single = post_nps(client, tenant, unique_email(), 8, comment="Onboarding was smooth")
    assert search(client, tenant, "onboarding") == ["Onboarding was smooth"]

    items = [
        {"email": unique_email(), "score": 5, "comment": "Pricing too high", "sourceId": "p1"},
        {"email": unique_email(), "score": 6, "comment": "Pricing unclear", "sourceId": "p2"},
        {"email": unique_email(), "score": 7, "sourceId": "p3"},
    ]
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert search(client, tenant, "pricing") == ["Pricing too high", "Pricing unclear"]
    # bulk updates: the comment changed by sourceId, by _id, removed, and set where there was none
    p2 = client.get("/nps/srcid-p2", headers=tenant.viewer).json()["_id"]
    r = client.put(
        "/nps",
        json=[
            {"sourceId": "p1", "comment": "Cheaper than expected"},
            {"_id": p2, "comment": None},
            {"sourceId": "p3", "comment": "Pricing fair now"},
            {"_id": single["_id"], "score": 9},  # no comment sent: unchanged
        ],
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    assert search(client, tenant, "pricing") == ["Pricing fair now"]
    assert search(client, tenant, "cheaper") == ["Cheaper than expected"]
    assert search(client, tenant, "unclear") == [] and search(client, tenant, "high") == []
    assert search(client, tenant, "onboarding") == ["Onboarding was smooth"]

    # one record by id and by srcid-
    r = client.put(f"/nps/{single['_id']}", json={"comment": "Onboarding was slow"}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert search(client, tenant, "smooth") == []
    assert search(client, tenant, "onboard slow") == ["Onboarding was slow"]
    r = client.put("/nps/srcid-p3", json={"npsComment": "Fair pricing"}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert search(client, tenant, "pricing") == ["Fair pricing"]
    r = client.put(f"/nps/{single['_id']}", json={"comment": None}, headers=tenant.editor)
    assert r.status_code == 200 and r.json()["comment"] is None
    assert search(client, tenant, "onboarding") == []

    assert client.delete("/nps/srcid-p3", headers=tenant.admin).status_code == 200
    assert search(client, tenant, "pricing") == []
    fts_in_step(database)


def test_survey_responses_and_respondent_pages_keep_the_index_in_step(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    r = client.post(
        f"/v1/nps-surveys/{survey['id']}/responses",
        json={"email": unique_email(), "score": 9, "comment": "Imported answer about dashboards"},
        headers=tenant.editor,
    )
    assert r.status_code == 201, r.text
    assert search(client, tenant, "dashboards") == ["Imported answer about dashboards"]

    # the public link
    link = client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.viewer).json()
    answered = client.post(
        local(link["url"]), data={"score": "10", "comment": "Anonymous praise for exports"}
    )
    assert answered.status_code == 200
    assert search(client, tenant, "praise") == ["Anonymous praise for exports"]

    # an invitation: the score link records no comment, the form adds one, then clears it
    address = unique_email("inv")
    invite_one(client, tenant, survey["id"], address)
    run_jobs(database.db)
    [mail] = smtp.to(address)
    links = {n: local(url) for n, url in score_links(part(mail, "plain")).items()}
    assert client.get(links[4]).status_code == 200
    form = links[0].split("?", 1)[0]
    assert client.post(form, data={"score": "6", "comment": "Invitation comment wording"}).status_code == 200
    assert search(client, tenant, "wording") == ["Invitation comment wording"]
    assert client.post(form, data={"score": "6", "comment": "Reworded comment"}).status_code == 200
    assert search(client, tenant, "wording") == [] and search(client, tenant, "reworded") == [
        "Reworded comment"
    ]
    assert client.post(form, data={"score": "6", "comment": " "}).status_code == 200
    assert records_of(client, tenant, address)[0]["comment"] is None
    assert search(client, tenant, "reworded") == []
    fts_in_step(database)


def test_deleting_companies_and_contacts_with_cascade_keeps_the_index_in_step(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    company = client.post(
        "/companies", json={"name": "Acme", "domains": ["acme.test"]}, headers=tenant.editor
    )
    assert company.status_code == 200, company.text
    post_nps(client, tenant, "a@acme.test", 3, comment="Cascade company answer")
    kept = post_nps(client, tenant, "b@other.test", 3, comment="Cascade contact answer")
    post_nps(client, tenant, "c@other.test", 3, comment="Cascade survivor answer")
    assert len(search(client, tenant, "cascade")) == 3
    r = client.delete(f"/companies/{company.json()['_id']}", params={"cascade": "true"}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert search(client, tenant, "cascade") == ["Cascade contact answer", "Cascade survivor answer"]
    r = client.delete(f"/endusers/{kept['euId']}", params={"cascade": "true"}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert search(client, tenant, "cascade") == ["Cascade survivor answer"]
    fts_in_step(database)


def test_raw_sql_writes_keep_the_index_in_step(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    ids = add(client, tenant, "Raw original text", "Raw second text")
    with database.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE nps_record SET comment = 'Raw replaced wording' WHERE id = :id"), {"id": ids[0]}
        )
        conn.execute(text("DELETE FROM nps_record WHERE id = :id"), {"id": ids[1]})
    assert search(client, tenant, "raw") == ["Raw replaced wording"]
    assert search(client, tenant, "original") == []
    fts_in_step(database)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the FTS5 index is keyed by SQLite rowids
def test_vacuum_keeps_the_index_in_step(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    ids = add(client, tenant, *[f"vacuum gap {i}" for i in range(30)])
    with database.db.engine.begin() as conn:  # gaps in the rowids, which a renumbering would close
        conn.execute(
            text("DELETE FROM nps_record WHERE id IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"ids": ids[::2]},
        )
    vacuum = sqlite3.connect(database.url.removeprefix("sqlite:///"), isolation_level=None)
    vacuum.execute("VACUUM")
    vacuum.close()
    assert search(client, tenant, "vacuum") == sorted(f"vacuum gap {i}" for i in range(1, 30, 2))
    fts_in_step(database)


# ------------------------------------------------------------------------------- the index is used

VOCABULARY = [
    "great",
    "product",
    "support",
    "slow",
    "fast",
    "price",
    "billing",
    "team",
    "easy",
    "love",
    "interface",
    "export",
    "mobile",
]


def explain(database: TestDatabase, statement: Any) -> str:
    """The database's plan of ``statement``, as text."""
    with database.db.engine.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        if database.kind == "sqlite":
            params: Any = tuple(
                p.isoformat(sep=" ") if isinstance(p, datetime) else p
                for p in (compiled.params[name] for name in compiled.positiontup or ())
            )
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled.string}", params).all()
            return "\n".join(str(row[-1]) for row in rows)
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled.string}", compiled.params).all()
        return "\n".join(row[0] for row in rows)


def test_search_reads_the_index(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    rng = random.Random(3)
    comments = [
        " ".join(rng.choices(VOCABULARY, k=8) + (["zeppelin"] if i % 100 == 0 else [])) for i in range(4000)
    ]
    for part_ in range(0, len(comments), 2000):
        add(client, tenant, *comments[part_ : part_ + 2000])
    if database.kind == "postgresql":
        with database.db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE nps_record")
    q = ListQuery(search="zeppel")
    now = datetime.now(UTC).replace(tzinfo=None)
    page = ordered(filtered(tenant.org_id, q, now), None).limit(100)
    count = filtered(tenant.org_id, q, now).with_only_columns(func.count())
    for statement in (page, count):
        plan = explain(database, statement)
        if database.kind == "sqlite":
            assert "nps_record_fts VIRTUAL TABLE INDEX" in plan, plan
            assert "SEARCH nps_record USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan  # the matches only
        else:
            assert f"Bitmap Index Scan on {queries.SEARCH_INDEX}" in plan, plan
            assert "Tid Scan on nps_record" in plan, plan  # the matches only
            assert "Seq Scan" not in plan, plan
    assert len(search(client, tenant, "zeppel")) == 40


# ------------------------------------------------------------- both databases split and fold alike


def sqlite_words(texts: list[str]) -> list[set[str]]:
    """The words SQLite's FTS5 (the tokenizer of migration 0005) indexes for each of ``texts``."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE f USING fts5(x, tokenize='unicode61 remove_diacritics 2', detail=none)"
    )
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    conn.executemany("INSERT INTO f (rowid, x) VALUES (?, ?)", list(enumerate(texts)))
    words: list[set[str]] = [set() for _ in texts]
    for doc, term in conn.execute("SELECT doc, term FROM v"):
        words[doc].add(term)
    conn.close()
    return words


def test_separators_are_the_sqlite_tokenizers() -> None:
    """queries.SEPARATORS (and the migration's copy) is what unicode61 takes for a separator."""
    assert queries.SEPARATORS == MIGRATION.SEPARATORS and queries.DIACRITICS == MIGRATION.DIACRITICS
    code_points = [
        c
        for c in [*range(1, 0x30000), *range(0x30000, 0x110000, 97), 0xE0001, 0xE0100]
        if not 0xD800 <= c <= 0xDFFF
    ]
    indexed = sqlite_words([f"q{chr(c)}q" for c in code_points])
    for c, words in zip(code_points, indexed, strict=True):
        assert (words == {"q"}) == (search_words(f"q{chr(c)}q") == ["q"]), hex(c)  # separated, or one word


ALPHABETS = {
    "ascii": [chr(c) for c in range(32, 127)],
    # Latin letters, but for Ǡ ǡ, which unicode61 keeps whole while PostgreSQL strips them
    "latin": [chr(c) for c in [*range(0xA0, 0x250), *range(0x1E00, 0x1F00)] if c not in (0x1E0, 0x1E1)],
    "marks": [chr(c) for c in range(0x300, 0x370)],
    "punctuation": [*map(chr, range(0x2000, 0x2070)), *"«»¿¡’“”–—…€£¥©®™°±×÷"],
    "emoji": [chr(c) for c in [*range(0x1F300, 0x1F650), *range(0x1F900, 0x1FA00), 0xFE0F, 0x200D]],
    "greek": [chr(c) for c in range(0x386, 0x3CF)],
    "cyrillic": [chr(c) for c in range(0x400, 0x500)],
    "cjk": [chr(c) for c in [*range(0x3040, 0x3100), *range(0x4E00, 0x4E80), *range(0xAC00, 0xAC80)]],
    "digits": list("0123456789²³¹¼½¾⁰ⁱ⁴₀₁①②ⅠⅡ٠١٢"),
}


@pytest.mark.parametrize(
    "database", ["postgresql"], indirect=True
)  # PostgreSQL's function vs SQLite's tokenizer
def test_postgresql_splits_and_folds_words_as_sqlite(database: TestDatabase) -> None:
    """npsd_comment_words gives the words FTS5 indexes, text by text, over random texts mixing
    ASCII with each alphabet (Latin, combining marks, punctuation, emoji, Greek, Cyrillic, CJK)."""
    rng = random.Random(11)
    texts = []
    for alphabet in ALPHABETS.values():
        for _ in range(1500):
            texts.append(
                "".join(
                    rng.choice(alphabet if rng.random() < 0.5 else ALPHABETS["ascii"])
                    for _ in range(rng.randint(1, 40))
                )
            )
    with database.db.engine.connect() as conn:
        got = conn.execute(
            text("SELECT tsvector_to_array(npsd_comment_words(t)) FROM unnest(CAST(:texts AS text[])) AS t"),
            {"texts": texts},
        ).scalars()
        pg = [set(words) for words in got]
    mismatches = [
        (t, sorted(p), sorted(s)) for t, p, s in zip(texts, pg, sqlite_words(texts), strict=True) if p != s
    ]
    assert mismatches == []


# -------------------------------------------------------------------------------------- migration


@pytest.fixture
def fresh_url(database: TestDatabase) -> Iterator[str]:
    """An empty database of the session's kind (a file, or a schema of its own)."""
    if database.kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'fresh.db'}"
        return
    with pg_schema("npsd_search") as url:
        yield url


def search_objects(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        if db.is_sqlite:
            sql = "SELECT name FROM sqlite_master WHERE name LIKE 'nps_record_fts%'"
        else:
            sql = (
                "SELECT proname FROM pg_proc WHERE proname LIKE 'npsd_comment_%' "
                "AND pronamespace = current_schema()::regnamespace "
                "UNION SELECT indexname FROM pg_indexes WHERE indexname = 'ix_nps_record_comment_search' "
                "AND schemaname = current_schema()"
            )
        return {row[0] for row in conn.execute(text(sql))}


def test_migration_indexes_existing_comments_and_downgrades(fresh_url: str) -> None:
    upgrade(fresh_url, "0004")
    db = Database(fresh_url, pool_size=1)
    try:
        stamp = datetime.now(UTC).replace(tzinfo=None)
        with db.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO organization (id, name, created_at) VALUES ('0' || :o, 'search', :t)"),
                {"o": "a" * 23, "t": stamp},
            )
            conn.execute(
                text(
                    'INSERT INTO enduser (id, org_id, email, email_key, "primary", archived, version, '
                    "created_at, updated_at) VALUES (:e, :o, 'x@y.io', 'x@y.io', false, false, 0, :t, :t)"
                ),
                {"e": "e" * 24, "o": "0" + "a" * 23, "t": stamp},
            )
            for n, comment in enumerate(["Früher angelegt", "Older answer", None]):
                conn.execute(
                    text(
                        "INSERT INTO nps_record (id, org_id, enduser_id, email, score, comment, "
                        "date_answered, version, created_at, updated_at) "
                        "VALUES (:id, :o, :e, 'x@y.io', 5, :c, :t, 0, :t, :t)"
                    ),
                    {"id": f"{n:024x}", "o": "0" + "a" * 23, "e": "e" * 24, "c": comment, "t": stamp},
                )
        assert search_objects(db) == set()
        upgrade(fresh_url)
        assert search_objects(db) >= {"nps_record_fts", "ix_nps_record_comment_search"} & {
            "nps_record_fts" if db.is_sqlite else "ix_nps_record_comment_search"
        }
        with db.transaction(write=False) as session:
            org_id = "0" + "a" * 23
            found = list_records(session, org_id, ListQuery(search="fruher", expiry_days=None))
            assert [r["comment"] for r in found] == ["Früher angelegt"]
            assert count_records(session, org_id, ListQuery(search="answer", expiry_days=None)) == 1
        with db.engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"include_name": declared_by_models}), Base.metadata
            )
        assert diff == []  # the schema is the models', the search index aside
        command.downgrade(alembic_config(fresh_url), "0004")
        assert search_objects(db) == set()
        upgrade(fresh_url)
        with db.transaction(write=False) as session:
            assert count_records(session, "0" + "a" * 23, ListQuery(search="older", expiry_days=None)) == 1
    finally:
        db.dispose()


def test_search_index_objects_are_named_for_the_models_filter() -> None:
    assert not declared_by_models("nps_record_fts_data", "table", {})
    assert not declared_by_models(queries.SEARCH_TABLE, "table", {})
    assert not declared_by_models(queries.SEARCH_INDEX, "index", {})
    assert declared_by_models("nps_record", "table", {}) and declared_by_models(None, "schema", {})
    assert SEARCH_INDEX_OBJECTS == (queries.SEARCH_TABLE, queries.SEARCH_INDEX)


def test_the_search_splits_words_with_the_table_migration_0005_froze() -> None:
    """Migrations are frozen, so 0005 keeps its own copy of the separator table; a search must
    split words exactly as the index it queries did."""
    import importlib.util

    from npsd.records import queries

    path = Path(queries.__file__).parent.parent / "migrations" / "versions" / "0005_comment_search.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.SEPARATORS == queries.SEPARATORS
