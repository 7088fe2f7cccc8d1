-- The compact blind index (crypto/blind_index.py, docs/ENCRYPTION.md): one row per blind
-- prefix token of an encrypted store, keyed by the token itself. WITHOUT ROWID: the table
-- is its own primary-key B-tree, so a token costs one B-tree insert there plus one in the
-- (rtype, rid) index that deletes a resource's tokens, instead of a table row and two
-- index entries in idx_string; 16 binary bytes instead of 32 hex characters; no param
-- column (the token is keyed by its parameter already). The physical order is the tokens'
-- order, which says nothing about which token is which prefix.
CREATE TABLE idx_blind (
    token BLOB NOT NULL,
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    PRIMARY KEY (token, rtype, rid)
) WITHOUT ROWID;
CREATE INDEX idx_blind_res ON idx_blind (rtype, rid);

-- An encrypted store kept every prefix token in idx_string (value = 32 hex characters);
-- the same tokens move here, so that searches keep working without a reindex. The row
-- of each whole value (it carries the :exact token in text) stays in idx_string.
-- `phonetic` now shares the tokens of `name` (the same values; crypto/blind_index.py):
-- its own old tokens are dropped, and its whole-value rows become copies of name's.
-- phivault_unhex is registered by store/sqlite.py (SQLite before 3.41 has no unhex).
INSERT OR IGNORE INTO idx_blind (token, rtype, rid)
SELECT phivault_unhex(value), rtype, rid FROM idx_string
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person')
  AND param IN ('name', 'family', 'given', 'address', 'address-city',
                'address-country', 'address-postalcode', 'address-state')
  AND length(value) = 32 AND value NOT GLOB '*[^0-9a-f]*' AND (text IS NULL OR (length(text) = 32 AND text NOT GLOB '*[^0-9a-f]*'));
DELETE FROM idx_string
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person')
  AND param IN ('name', 'family', 'given', 'phonetic', 'address', 'address-city',
                'address-country', 'address-postalcode', 'address-state')
  AND length(value) = 32 AND value NOT GLOB '*[^0-9a-f]*' AND (text IS NULL OR param = 'phonetic');
INSERT INTO idx_string (rtype, param, value, text, rid)
SELECT rtype, 'phonetic', value, text, rid FROM idx_string
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person') AND param = 'name'
  AND length(value) = 32 AND value NOT GLOB '*[^0-9a-f]*' AND (text IS NULL OR (length(text) = 32 AND text NOT GLOB '*[^0-9a-f]*'));
