-- The todos of the todo plugin (MySQL and MariaDB).
-- InnoDB keeps its AUTO_INCREMENT counter across restarts (MySQL 8, MariaDB 10.2.4+), so an
-- id is never handed out again after a delete. utf8mb4: a title may hold any character.
-- Timestamps are ISO 8601 UTC text written by the plugin ("2026-01-31T09:12:44.120Z").
CREATE TABLE todos (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title VARCHAR(200) NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE,
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32) NOT NULL,
    INDEX todos_created_at (created_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
