-- The rows of migkit's batches (MySQL): note holds the number of rows of the batch.
CREATE TABLE migkit_items (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    batch BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    note BIGINT NOT NULL,
    INDEX migkit_items_batch (batch)
) ENGINE = InnoDB;
