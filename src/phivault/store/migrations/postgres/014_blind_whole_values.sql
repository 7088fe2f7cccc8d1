-- An encrypted store no longer keeps a token of each whole identifying value
-- (crypto/blind_index.py): `:exact` looks up the value's prefix tokens and compares the
-- decrypted values as written. The old rows' tokens go (value: the token of the longest
-- indexed prefix; text: the :exact token of the value as written, which told which rows
-- hold the very same name); each row stays, with neither, for `:missing`. Only the
-- blinded parameters of the blinded types, and only rows whose value and text are tokens
-- (32 hex digits), as in migration 012: a store without encryption keeps its values.
UPDATE idx_string SET value = NULL, text = NULL
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person')
  AND param IN ('name', 'family', 'given', 'phonetic', 'address', 'address-city',
                'address-country', 'address-postalcode', 'address-state')
  AND value ~ '^[0-9a-f]{32}$'
  AND (text IS NULL OR text ~ '^[0-9a-f]{32}$');
