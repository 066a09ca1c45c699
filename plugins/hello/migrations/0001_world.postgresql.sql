-- The World table of the TechEmpower database tests (PostgreSQL): 10000 rows, ids
-- 1..10000, each randomNumber drawn from 1..10000. Unquoted, the names fold to world and
-- randomnumber, as the statements of the hello plugin (also unquoted) expect.
CREATE TABLE World (
    id INTEGER NOT NULL PRIMARY KEY,
    randomNumber INTEGER NOT NULL DEFAULT 0
);

INSERT INTO World (id, randomNumber)
SELECT i, floor(random() * 10000)::integer + 1 FROM generate_series(1, 10000) AS i;
