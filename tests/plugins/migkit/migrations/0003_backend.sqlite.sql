-- Which file of migration 3 ran: the SQLite variant.
CREATE TABLE migkit_meta (k VARCHAR(64) NOT NULL PRIMARY KEY, v VARCHAR(64) NOT NULL);
INSERT INTO migkit_meta (k, v) VALUES ('backend', 'sqlite');
INSERT INTO migkit_runs (migration) VALUES ('0003_backend');
