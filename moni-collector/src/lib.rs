//! moni-collector: the central service that will ingest reduced Parquet from
//! many moni-nodes into a Hive-partitioned dataset and compare shadow and
//! production VNets fleet-wide. This crate holds its skeleton: the record
//! schemas it will validate uploads against come from `analyzers`.

use analyzers::schema;

/// The datasets the collector accepts, with their schema version.
pub fn accepted_datasets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("flows", schema::SCHEMA_VERSION),
        ("bins", schema::SCHEMA_VERSION),
    ]
}
