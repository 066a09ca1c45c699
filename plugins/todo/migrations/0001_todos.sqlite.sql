-- The todos of the todo plugin (SQLite).
-- AUTOINCREMENT: an id is never handed out again after a delete. Timestamps are ISO 8601
-- UTC text written by the plugin ("2026-01-31T09:12:44.120Z"), which sorts in time order.
CREATE TABLE todos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title VARCHAR(200) NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE CHECK (done IN (0, 1)),
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32) NOT NULL
);

CREATE INDEX todos_created_at ON todos (created_at, id);
