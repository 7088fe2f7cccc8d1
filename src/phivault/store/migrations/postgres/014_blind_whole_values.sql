-- An encrypted store keeps a token of a whole identifying value only where the snooping
-- detector matches staff and patients on it: family names, given names and `address`
-- values (crypto/blind_index.py, WHOLE_VALUES). Search no longer reads such tokens:
-- `:exact` looks up the value's prefix tokens and compares the decrypted values as
-- written. The other blinded string parameters' rows lose theirs (value: the token of
-- the longest indexed prefix; text: the token of the value as written, which told which
-- rows hold the very same city or name) and stay, with neither, for `:missing`. Only
-- rows whose value and text are tokens (32 hex digits), as in migration 012: a store
-- without encryption keeps its values.
UPDATE idx_string SET value = NULL, text = NULL
WHERE rtype IN ('Patient', 'RelatedPerson', 'Practitioner', 'Person')
  AND param IN ('name', 'phonetic', 'address-city', 'address-country',
                'address-postalcode', 'address-state')
  AND value ~ '^[0-9a-f]{32}$'
  AND (text IS NULL OR text ~ '^[0-9a-f]{32}$');
