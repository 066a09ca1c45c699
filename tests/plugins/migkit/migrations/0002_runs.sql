-- One row per application of this migration: the tests count them (exactly one, however
-- many replicas migrate at once).
CREATE TABLE migkit_runs (migration VARCHAR(64) NOT NULL);
INSERT INTO migkit_runs (migration) VALUES ('0002_runs');
