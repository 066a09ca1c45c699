-- The rows of migkit's batches (SQLite): note holds the number of rows of the batch.
CREATE TABLE migkit_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    note INTEGER NOT NULL
);
CREATE INDEX migkit_items_batch ON migkit_items (batch);
