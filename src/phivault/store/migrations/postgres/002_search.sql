-- phivault schema v2 (PostgreSQL): indexes for FHIR search (store/search_sql.py).
-- A search reads its most selective parameter from a "match" index keyed by
-- (rtype, param, value, ...) and probes every other parameter of each candidate through a
-- "res" index keyed by (rtype, rid, param, ...). Both end in the column the query needs
-- next, so neither touches the table; SQLite's planner, without statistics, prefers the index
-- with the most equality columns, which is why rid is part of each match index.
DROP INDEX IF EXISTS idx_token_lookup;
DROP INDEX IF EXISTS idx_token_rid;
CREATE INDEX idx_token_match ON idx_token (rtype, param, value, system, rid);
CREATE INDEX idx_token_res ON idx_token (rtype, rid, param, value, system);

DROP INDEX IF EXISTS idx_string_lookup;
DROP INDEX IF EXISTS idx_string_rid;
CREATE INDEX idx_string_match ON idx_string (rtype, param, value, rid);
CREATE INDEX idx_string_res ON idx_string (rtype, rid, param, value);

DROP INDEX IF EXISTS idx_date_rid;
CREATE INDEX idx_date_res ON idx_date (rtype, rid, param, lo, hi);

DROP INDEX IF EXISTS idx_reference_lookup;
DROP INDEX IF EXISTS idx_reference_rid;
CREATE INDEX idx_reference_match ON idx_reference (value, system, param, rtype, rid);
CREATE INDEX idx_reference_res ON idx_reference (rtype, rid, param, system, value);
CREATE INDEX idx_reference_ident ON idx_reference (rtype, param, text) WHERE text IS NOT NULL;

DROP INDEX IF EXISTS idx_quantity_rid;
CREATE INDEX idx_quantity_res ON idx_quantity (rtype, rid, param);

DROP INDEX IF EXISTS idx_number_rid;
CREATE INDEX idx_number_res ON idx_number (rtype, rid, param);

DROP INDEX IF EXISTS idx_uri_lookup;
DROP INDEX IF EXISTS idx_uri_rid;
CREATE INDEX idx_uri_match ON idx_uri (rtype, param, value, rid);
CREATE INDEX idx_uri_res ON idx_uri (rtype, rid, param);

DROP INDEX IF EXISTS idx_composite_rid;
CREATE INDEX idx_composite_res ON idx_composite (rtype, rid, param);

-- Text is ordered and range-compared in code point order (COLLATE "C") so that results,
-- sorting and paging are the same as on SQLite whatever the database's collation; these
-- indexes serve those comparisons (string starts-with, the default order by id).
CREATE INDEX idx_string_prefix ON idx_string (rtype, param, (value COLLATE "C"), rid);
CREATE INDEX resources_type_rid_c ON resources (rtype, (rid COLLATE "C"));
