-- Space held back inside the database file for the audit log (store/sqlite.py): one row
-- of zeros, deleted when the disk is full so that reads can still be audited, and put
-- back by the first data write that finds space again.
CREATE TABLE space_reserve (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    filler BLOB NOT NULL
);
