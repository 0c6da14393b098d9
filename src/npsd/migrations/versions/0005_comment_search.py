"""comment search: an index over nps_record.comment on both databases

A search (``GET /nps?search=``) finds the answers whose comment holds every word of the search as
a word or the beginning of one, in any case and with or without diacritics. Both databases split
and fold text alike, the way SQLite's ``unicode61`` tokenizer does with ``remove_diacritics 2``:
a word is a run of letters and digits and every other character separates words
(:data:`SEPARATORS`, read off that tokenizer); letters compare in lower case, Latin letters
without their diacritics (é = e, ñ = n); ß, æ, œ and ø are letters of their own.

SQLite: ``nps_record_fts``, an FTS5 table over the comments with external content (it stores
only the index, keyed by ``nps_record``'s rowid), kept in step by triggers on insert, update and
delete, so every write (the bulk SQL paths, cascades, raw SQL) updates it with no code of its own.
``nps_record`` is a rowid table (its key is a text ``id``): its rowids hold through updates and
``VACUUM`` (current SQLite keeps the rowids of a table without INTEGER PRIMARY KEY; the search
tests check it). A migration that rebuilds ``nps_record`` (Alembic's batch mode copies it into a
new table) drops these triggers and renumbers the rows: it must create the triggers again and
run ``INSERT INTO nps_record_fts(nps_record_fts) VALUES('rebuild')``, the command that also
repairs the index after writes made with the triggers off. ``INSERT OR REPLACE`` into
``nps_record`` deletes without firing delete triggers unless ``PRAGMA recursive_triggers`` is on
(npsd never writes records that way).

PostgreSQL: ``npsd_comment_words(comment)``, a comment's words as a ``tsvector``, split and
folded as above, under a GIN index (the ``simple`` configuration's parser would not match
SQLite: it keeps ``foo@bar.com``, ``3.5`` and ``e-mail`` whole, and keeps diacritics);
``npsd_comment_query(search)``, the ``tsquery`` of a search's words, each a prefix. Queries use
exactly the indexed expression. The functions use built-ins only (PL/pgSQL, no extension); they
need a UTF-8 database (``normalize``), and letters outside the Latin alphabet compare in lower
case as the database's ``LC_CTYPE`` says (any UTF-8 locale folds them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Code points (hexadecimal, ranges inclusive) that separate words: every character SQLite's
# unicode61 tokenizer (Unicode 6.1 tables, frozen) does not take as part of a word. The same
# table is npsd.records.queries.SEPARATORS, which splits a search into its words.
SEPARATORS = (
    "1-2f,3a-40,5b-60,7b-a9,ab-b1,b4,b6-b8,bb,bf,d7,f7,2c2-2c5,2d2-2df,2e5-2eb,2ed,2ef-2ff,305,"
    "30d-30e,310,312-31a,31c-322,329-32c,32f,332-36f,375,37e,384-385,387,3f6,482-489,55a-55f,"
    "589-58a,58f,591-5c7,5f3-5f4,600-604,606-61b,61e-61f,64b-65f,66a-66d,670,6d4,6d6-6e4,6e7-6ed,"
    "6fd-6fe,700-70d,70f,711,730-74a,7a6-7b0,7eb-7f3,7f6-7f9,816-819,81b-823,825-827,829-82d,"
    "830-83e,859-85b,85e,8e4-8fe,900-903,93a-93c,93e-94f,951-957,962-965,970,981-983,9bc,9be-9c4,"
    "9c7-9c8,9cb-9cd,9d7,9e2-9e3,9f2-9f3,9fa-9fb,a01-a03,a3c,a3e-a42,a47-a48,a4b-a4d,a51,a70-a71,"
    "a75,a81-a83,abc,abe-ac5,ac7-ac9,acb-acd,ae2-ae3,af0-af1,b01-b03,b3c,b3e-b44,b47-b48,b4b-b4d,"
    "b56-b57,b62-b63,b70,b82,bbe-bc2,bc6-bc8,bca-bcd,bd7,bf3-bfa,c01-c03,c3e-c44,c46-c48,c4a-c4d,"
    "c55-c56,c62-c63,c7f,c82-c83,cbc,cbe-cc4,cc6-cc8,cca-ccd,cd5-cd6,ce2-ce3,d02-d03,d3e-d44,"
    "d46-d48,d4a-d4d,d57,d62-d63,d79,d82-d83,dca,dcf-dd4,dd6,dd8-ddf,df2-df4,e31,e34-e3a,e3f,"
    "e47-e4f,e5a-e5b,eb1,eb4-eb9,ebb-ebc,ec8-ecd,f01-f1f,f34-f3f,f71-f87,f8d-f97,f99-fbc,fbe-fcc,"
    "fce-fda,102b-103e,104a-104f,1056-1059,105e-1060,1062-1064,1067-106d,1071-1074,1082-108d,"
    "108f,109a-109f,10fb,135d-1368,1390-1399,1400,166d-166e,1680,169b-169c,16eb-16ed,1712-1714,"
    "1732-1736,1752-1753,1772-1773,17b4-17d6,17d8-17db,17dd,1800-180e,18a9,1920-192b,1930-193b,"
    "1940,1944-1945,19b0-19c0,19c8-19c9,19de-19ff,1a17-1a1b,1a1e-1a1f,1a55-1a5e,1a60-1a7c,1a7f,"
    "1aa0-1aa6,1aa8-1aad,1b00-1b04,1b34-1b44,1b5a-1b7c,1b80-1b82,1ba1-1bad,1be6-1bf3,1bfc-1bff,"
    "1c24-1c37,1c3b-1c3f,1c7e-1c7f,1cc0-1cc7,1cd0-1ce8,1ced,1cf2-1cf4,1dc0-1de6,1dfc-1dff,1fbd,"
    "1fbf-1fc1,1fcd-1fcf,1fdd-1fdf,1fed-1fef,1ffd-1ffe,2000-2064,206a-206f,207a-207e,208a-208e,"
    "20a0-20b9,20d0-20f0,2100-2101,2103-2106,2108-2109,2114,2116-2118,211e-2123,2125,2127,2129,"
    "212e,213a-213b,2140-2144,214a-214d,214f,2190-23f3,2400-2426,2440-244a,249c-24e9,2500-26ff,"
    "2701-2775,2794-2b4c,2b50-2b59,2ce5-2cea,2cef-2cf1,2cf9-2cfc,2cfe-2cff,2d70,2d7f,2de0-2e2e,"
    "2e30-2e3b,2e80-2e99,2e9b-2ef3,2f00-2fd5,2ff0-2ffb,3000-3004,3008-3020,302a-3030,3036-3037,"
    "303d-303f,3099-309c,30a0,30fb,3190-3191,3196-319f,31c0-31e3,3200-321e,322a-3247,3250,"
    "3260-327f,328a-32b0,32c0-32fe,3300-33ff,4dc0-4dff,a490-a4c6,a4fe-a4ff,a60d-a60f,a66f-a67e,"
    "a69f,a6f0-a6f7,a700-a716,a720-a721,a789-a78a,a802,a806,a80b,a823-a82b,a836-a839,a874-a877,"
    "a880-a881,a8b4-a8c4,a8ce-a8cf,a8e0-a8f1,a8f8-a8fa,a926-a92f,a947-a953,a95f,a980-a983,"
    "a9b3-a9cd,a9de-a9df,aa29-aa36,aa43,aa4c-aa4d,aa5c-aa5f,aa77-aa79,aa7b,aab0,aab2-aab4,"
    "aab7-aab8,aabe-aabf,aac1,aade-aadf,aaeb-aaf1,aaf5-aaf6,abe3-abed,fb1e,fb29,fbb2-fbc1,"
    "fd3e-fd3f,fdfc-fdfd,fe00-fe19,fe20-fe26,fe30-fe52,fe54-fe66,fe68-fe6b,feff,ff01-ff0f,"
    "ff1a-ff20,ff3b-ff40,ff5b-ff65,ffe0-ffe6,ffe8-ffee,fff9-ffff,10100-10102,10137-1013f,"
    "10179-10189,10190-1019b,101d0-101fd,1039f,103d0,10857,1091f,1093f,10a01-10a03,10a05-10a06,"
    "10a0c-10a0f,10a38-10a3a,10a3f,10a50-10a58,10a7f,10b39-10b3f,11000-11002,11038-1104d,"
    "11080-11082,110b0-110c1,11100-11102,11127-11134,11140-11143,11180-11182,111b3-111c0,"
    "111c5-111c8,116ab-116b7,12470-12473,16f51-16f7e,16f8f-16f92,1d000-1d0f5,1d100-1d126,"
    "1d129-1d1dd,1d200-1d245,1d300-1d356,1d6c1,1d6db,1d6fb,1d715,1d735,1d74f,1d76f,1d789,1d7a9,"
    "1d7c3,1eef0-1eef1,1f000-1f02b,1f030-1f093,1f0a0-1f0ae,1f0b1-1f0be,1f0c1-1f0cf,1f0d1-1f0df,"
    "1f110-1f12e,1f130-1f16b,1f170-1f19a,1f1e6-1f202,1f210-1f23a,1f240-1f248,1f250-1f251,"
    "1f300-1f320,1f330-1f335,1f337-1f37c,1f380-1f393,1f3a0-1f3c4,1f3c6-1f3ca,1f3e0-1f3f0,"
    "1f400-1f43e,1f440,1f442-1f4f7,1f4f9-1f4fc,1f500-1f53d,1f540-1f543,1f550-1f567,1f5fb-1f640,"
    "1f645-1f64f,1f680-1f6c5,1f700-1f773,e0001,e0020-e007f,e0100-e01ef"
)
# The diacritical marks unicode61 drops wherever they stand (a word of nothing else is no word).
DIACRITICS = "300-304,306-30c,30f,311,31b,323-328,32d-32e,330-331"
# Letters unicode61 folds that lower() does not (or not in every locale), and what they fold to.
FOLD_FROM = "µſςϐϑϕϖϰϱϵẛÆÐØÞĐĦĲĿŁŊŒŦẞ"
FOLD_TO = "μsσβθφπκρεsæðøþđħĳŀłŋœŧß"  # noqa: RUF001 (Greek letters, as meant)
# A PostgreSQL lexeme holds at most 2,047 bytes: longer words are indexed by their first 200
# letters, which a search (at most 200 characters) cannot tell from the whole word.
MAX_WORD = 200


def char_class(ranges: str) -> str:
    """A bracket expression of ``ranges`` in the escapes PostgreSQL and Python both read."""

    def char(code: str) -> str:
        n = int(code, 16)
        return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"

    return "[" + "".join("-".join(char(c) for c in item.split("-")) for item in ranges.split(",")) + "]"


# detail=none: the index keeps which rows hold a word, not where (no phrase queries), and
# columnsize=0 keeps no per-row sizes (no ranking): a smaller index, cheaper writes.
FTS_TABLE = """
CREATE VIRTUAL TABLE nps_record_fts USING fts5(
    comment,
    content='nps_record', content_rowid='rowid',
    tokenize='unicode61 remove_diacritics 2',
    detail=none, columnsize=0
)
"""
TRIGGERS = {
    "nps_record_fts_insert": """
CREATE TRIGGER nps_record_fts_insert AFTER INSERT ON nps_record WHEN new.comment IS NOT NULL
BEGIN
    INSERT INTO nps_record_fts (rowid, comment) VALUES (new.rowid, new.comment);
END
""",
    "nps_record_fts_delete": """
CREATE TRIGGER nps_record_fts_delete AFTER DELETE ON nps_record WHEN old.comment IS NOT NULL
BEGIN
    INSERT INTO nps_record_fts (nps_record_fts, rowid, comment) VALUES ('delete', old.rowid, old.comment);
END
""",
    "nps_record_fts_update": """
CREATE TRIGGER nps_record_fts_update AFTER UPDATE ON nps_record
WHEN old.comment IS NOT new.comment OR old.rowid != new.rowid
BEGIN
    INSERT INTO nps_record_fts (nps_record_fts, rowid, comment)
        SELECT 'delete', old.rowid, old.comment WHERE old.comment IS NOT NULL;
    INSERT INTO nps_record_fts (rowid, comment)
        SELECT new.rowid, new.comment WHERE new.comment IS NOT NULL;
END
""",
}


def comment_words_function() -> str:
    """``npsd_comment_words(comment)``: the words of a comment, split and folded as unicode61 does
    (about 25 us a comment of 15 words with accents, 10 us in ASCII).

    PARALLEL RESTRICTED although it is safe: the planner takes any prefix search for 2% of the
    table, and on a large table would start parallel workers to read a few thousand matches from
    the index, which costs more than it saves (measured at a million answers: twice the time).
    """
    separators = char_class(SEPARATORS)
    diacritics = char_class(DIACRITICS)
    return f"""
CREATE FUNCTION npsd_comment_words(comment text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED AS $fn$
DECLARE
    t text := coalesce(comment, '');
BEGIN
    IF t ~ '[^\\u0001-\\u007f]' THEN
        t := regexp_replace(t, '{diacritics}+', '', 'g');
        IF t ~ '[{FOLD_FROM}]' THEN
            t := translate(t, '{FOLD_FROM}', '{FOLD_TO}');
        END IF;
        -- Latin letters lose their diacritics; other letters (Greek, Hangul...) are composed again
        IF t ~ '[\\u00c0-\\u024f\\u1e00-\\u1eff]' THEN
            t := regexp_replace(normalize(t, NFD), '([A-Za-z]){diacritics}+', '\\1', 'g');
            IF t ~ '[^\\u0001-\\u024f\\u1e00-\\u1eff\\u2000-\\u206f]' THEN
                t := normalize(t, NFC);
            END IF;
        END IF;
    END IF;
    t := lower(t);
    IF length(t) > {MAX_WORD} THEN
        t := regexp_replace(
            regexp_replace(t, '{separators}+', ' ', 'g'), '([^ ]{{{MAX_WORD}}})[^ ]+', '\\1', 'g'
        );
    END IF;
    RETURN array_to_tsvector(array_remove(regexp_split_to_array(t, '{separators}+'), ''));
END
$fn$
"""


# Each word of the search, folded as comments are, is a prefix term ('word':*), all ANDed; a word
# that begins another word of the search adds nothing and is left out. NULL for no word at all.
COMMENT_QUERY_FUNCTION = r"""
CREATE FUNCTION npsd_comment_query(search text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED AS $fn$
DECLARE
    words text[] := tsvector_to_array(npsd_comment_words(search));
BEGIN
    RETURN (
        SELECT string_agg('''' || replace(replace(w, '\', '\\'), '''', '''''') || ''':*', ' & ')::tsquery
        FROM unnest(words) AS w
        WHERE NOT EXISTS (SELECT FROM unnest(words) AS o WHERE o <> w AND starts_with(o, w))
    );
END
$fn$
"""
GIN_INDEX = (
    "CREATE INDEX ix_nps_record_comment_search ON nps_record "
    "USING gin (npsd_comment_words(comment)) WHERE comment IS NOT NULL"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS_TABLE)
        op.execute(
            "INSERT INTO nps_record_fts (rowid, comment) "
            "SELECT rowid, comment FROM nps_record WHERE comment IS NOT NULL"
        )
        for sql in TRIGGERS.values():
            op.execute(sql)
    else:
        op.execute(comment_words_function())
        op.execute(COMMENT_QUERY_FUNCTION)
        op.execute(GIN_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE nps_record_fts")
    else:
        op.execute("DROP INDEX ix_nps_record_comment_search")
        op.execute("DROP FUNCTION npsd_comment_query(text)")
        op.execute("DROP FUNCTION npsd_comment_words(text)")
