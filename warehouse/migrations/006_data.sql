-- 006: the data ends of the factory — import batches with their rejected rows, and export versions.

-- One row per import of one set of files read one way (batch_id = hash of the files' contents and the
-- import spec): a re-import of the same files is recognised. Rows of `queries` it added carry its run_id.
CREATE TABLE import_batches (
    batch_id     VARCHAR PRIMARY KEY,
    kind         VARCHAR NOT NULL,        -- queries
    dataset      VARCHAR,
    files        JSON NOT NULL,           -- [{file, sha256, encoding, records, bad}]
    spec         JSON NOT NULL,           -- the import spec (column map, mapping, format, encoding)
    mapping      VARCHAR,                 -- mapping file name@content hash
    n_records    INTEGER NOT NULL,        -- records read, good and bad
    n_good       INTEGER NOT NULL,        -- valid, distinct query texts
    n_new        INTEGER NOT NULL,        -- of those, not stored before
    n_duplicates INTEGER NOT NULL,        -- repeated texts inside the input
    n_rejected   INTEGER NOT NULL,        -- bad rows skipped with --skip-bad
    reject_file  VARCHAR,
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Bad rows skipped by an import run with --skip-bad (also written to its reject file).
CREATE TABLE import_rejects (
    batch_id VARCHAR NOT NULL,
    file     VARCHAR NOT NULL,
    "row"    INTEGER,                     -- 1-based record number in the file
    line     INTEGER,                     -- 1-based line where the record starts (NULL for Parquet)
    error    VARCHAR NOT NULL,
    raw      VARCHAR,
    run_id   VARCHAR NOT NULL,
    PRIMARY KEY (batch_id, file, "row")
);

-- One row per export folder: its manifest (counts, file hashes, source runs, config) as written to
-- <folder>/manifest.json, and that file's hash (what training runs record as export_manifest_hash).
CREATE TABLE export_versions (
    export_id       VARCHAR PRIMARY KEY,
    path            VARCHAR NOT NULL,
    manifest        JSON NOT NULL,
    manifest_sha256 VARCHAR NOT NULL,
    n_rows          INTEGER NOT NULL,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);
