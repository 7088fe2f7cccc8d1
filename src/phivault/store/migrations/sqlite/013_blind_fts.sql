-- The blind prefix tokens of an encrypted SQLite store move from idx_blind (one B-tree
-- entry per token) to an FTS5 inverted index (docs/ENCRYPTION.md, "How the blind index is
-- stored"). The tokens are uniformly random keys: in a B-tree every one of a Patient's ~45
-- lands on a leaf page of its own, and each such page is written to the WAL again at every
-- commit (4 KiB per token). FTS5 keeps a transaction's tokens as one small sorted segment
-- and merges segments in the background of later writes: a few pages per resource.
--
-- idx_blind_docs: one row per resource, its tokens (hex, space-separated, in token order,
-- never in prefix order). blind_fts indexes that column (external content: the tokens are
-- not stored twice); the triggers keep it in step, so deleting a resource's row here (an
-- update, a delete, a reindex, a crypto-shred, an incremental restore) removes its tokens
-- from the index too. detail=none: the index holds only which rows have a token.
CREATE TABLE idx_blind_docs (
    num INTEGER PRIMARY KEY,
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    tokens TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_blind_docs_res ON idx_blind_docs (rtype, rid);
CREATE VIRTUAL TABLE blind_fts USING fts5(
    tokens, content='idx_blind_docs', content_rowid='num', tokenize='ascii', detail='none'
);
CREATE TRIGGER idx_blind_docs_insert AFTER INSERT ON idx_blind_docs BEGIN
    INSERT INTO blind_fts (rowid, tokens) VALUES (new.num, new.tokens);
END;
CREATE TRIGGER idx_blind_docs_delete AFTER DELETE ON idx_blind_docs BEGIN
    INSERT INTO blind_fts (blind_fts, rowid, tokens) VALUES ('delete', old.num, old.tokens);
END;
CREATE TRIGGER idx_blind_docs_update AFTER UPDATE ON idx_blind_docs BEGIN
    INSERT INTO blind_fts (blind_fts, rowid, tokens) VALUES ('delete', old.num, old.tokens);
    INSERT INTO blind_fts (rowid, tokens) VALUES (new.num, new.tokens);
END;

INSERT INTO idx_blind_docs (rtype, rid, tokens)
SELECT rtype, rid, group_concat(token, ' ') FROM (
    SELECT rtype, rid, lower(hex(token)) AS token FROM idx_blind ORDER BY rtype, rid, token
) GROUP BY rtype, rid;
DROP TABLE idx_blind;
