//! The node's deployment example cannot rot (every example's loading is
//! `example_configs_load` in cli.rs): its `[ship]` shows the built-in defaults
//! and pairs with `collector.example.toml` (its token is a node's there,
//! its node name that node's id, its collector URL that collector's port).

use std::path::{Path, PathBuf};

use moni_node::config::{NodeConfig, ShipSection};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/config")
}

#[test]
fn the_deployment_example_ships_to_the_example_collector() {
    let c = NodeConfig::load(&samples().join("node-live.example.toml")).expect("loads");
    let r = c.resolve(None).expect("resolves");
    let ship = r.ship.expect("[ship] is set");
    assert_eq!(ship.collectors, ["http://collector.example:9470"]);
    // Every other [ship] key is shown at its default.
    let mut shown = c.ship.clone();
    let default = ShipSection::default();
    shown.collectors = default.collectors.clone();
    shown.token = None;
    assert_eq!(format!("{shown:?}"), format!("{default:?}"));
    // The pair: the collector example knows this node and its token.
    let text = std::fs::read_to_string(samples().join("collector.example.toml")).expect("read");
    let col: toml::Value = toml::from_str(&text).expect("toml");
    let nodes = col["nodes"].as_array().expect("[[nodes]]");
    let me = nodes
        .iter()
        .find(|n| n["id"].as_str() == Some(r.node.name.as_str()))
        .expect("node.name is a [[nodes]] id of the collector example");
    assert_eq!(me["token"].as_str(), Some(ship.token.as_str()));
    let listen = col["server"]["listen"].as_str().expect("listen");
    assert!(
        ship.collectors[0].ends_with(&listen[listen.rfind(':').expect("port")..]),
        "{listen}"
    );
}
