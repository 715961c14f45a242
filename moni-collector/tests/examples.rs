//! `samples/config/collector.example.toml` cannot rot: it loads, resolves,
//! and every key it shows with its default holds the built-in default.

use moni_collector::config::{CollectorConfig, ServerSection, StorageSection};
use std::path::Path;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/config/collector.example.toml")
}

#[test]
fn the_collector_example_loads_and_shows_the_true_defaults() {
    let c = CollectorConfig::load(&example()).expect("example loads");
    let s = c.resolve().expect("example resolves");
    assert_eq!(s.tokens.len(), 1);
    assert_eq!(c.readers.len(), 1);
    // listen and data_dir are the deployment's values; every other
    // [server] key is shown at its default.
    let mut server = c.server.clone();
    let default = ServerSection::default();
    assert_eq!(server.listen, "0.0.0.0:9470");
    server.listen = default.listen.clone();
    server.data_dir = default.data_dir.clone();
    assert_eq!(format!("{server:?}"), format!("{default:?}"));
    assert_eq!(
        format!("{:?}", c.storage),
        format!("{:?}", StorageSection::default())
    );
}
