-- Which file of migration 3 ran: this plain one on a backend without a variant of its own.
CREATE TABLE migkit_meta (k VARCHAR(64) NOT NULL PRIMARY KEY, v VARCHAR(64) NOT NULL);
INSERT INTO migkit_meta (k, v) VALUES ('backend', 'plain');
INSERT INTO migkit_runs (migration) VALUES ('0003_backend');
