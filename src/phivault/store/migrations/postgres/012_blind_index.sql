-- The compact blind index (crypto/blind_index.py, docs/ENCRYPTION.md): one row per blind
-- prefix token of an encrypted store, keyed by the token itself: 16 binary bytes instead
-- of 32 hex characters, no param column (the token is keyed by its parameter already),
-- and two B-tree entries per token (the key, and the (rtype, rid) index that deletes a
-- resource's tokens) instead of three in idx_string. Rows are inserted in token order,
-- so the heap's order says nothing about which token is which prefix.
CREATE TABLE idx_blind (
    token BYTEA NOT NULL,
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    PRIMARY KEY (token, rtype, rid)
);
CREATE INDEX idx_blind_res ON idx_blind (rtype, rid);

-- An encrypted store kept every prefix token in idx_string (value = 32 hex characters);
-- the same tokens move here, so that searches keep working without a reindex. The row
-- of each whole value (it carries the :exact token in text) stays in idx_string.
-- `phonetic` now shares the tokens of `name` (the same values; crypto/blind_index.py):
-- its own old tokens are dropped, and its whole-value rows become copies of name's.
INSERT INTO idx_blind (token, rtype, rid)
SELECT decode(value, 'hex'), rtype, rid FROM idx_string
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person')
  AND param IN ('name', 'family', 'given', 'address', 'address-city',
                'address-country', 'address-postalcode', 'address-state')
  AND value ~ '^[0-9a-f]{32}$' AND (text IS NULL OR text ~ '^[0-9a-f]{32}$')
ORDER BY 1
ON CONFLICT DO NOTHING;
DELETE FROM idx_string
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person')
  AND param IN ('name', 'family', 'given', 'phonetic', 'address', 'address-city',
                'address-country', 'address-postalcode', 'address-state')
  AND value ~ '^[0-9a-f]{32}$' AND (text IS NULL OR param = 'phonetic');
INSERT INTO idx_string (rtype, param, value, text, rid)
SELECT rtype, 'phonetic', value, text, rid FROM idx_string
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person') AND param = 'name'
  AND value ~ '^[0-9a-f]{32}$' AND (text IS NULL OR text ~ '^[0-9a-f]{32}$');
