//! `samples/config/reference.toml`, generated from the config types: every
//! section of [`NodeConfig`] in its field order, every key of the section's
//! struct with its doc comment (read from the struct's source) and its
//! value in `Default` (serialized). A key documented together with the
//! keys before it (one comment over a group) is printed in that group.
//! Keys without a default (`Option`s) are printed commented out, and so is
//! the `[[sources]]` array, so the file parses to the defaults.
//!
//! The test fails with a diff when the file is stale;
//! `MONI_BLESS=1 cargo test --workspace --lib -- reference_toml` rewrites
//! it.

use std::path::PathBuf;

use super::*;

/// The sources the section structs are defined in.
const SOURCES: [&str; 13] = [
    include_str!("mod.rs"),
    include_str!("node.rs"),
    include_str!("metrics.rs"),
    include_str!("sources.rs"),
    include_str!("ship.rs"),
    include_str!("vnets.rs"),
    include_str!("flows.rs"),
    include_str!("bins.rs"),
    include_str!("rtp.rs"),
    include_str!("ids.rs"),
    include_str!("output.rs"),
    include_str!("decode.rs"),
    include_str!("../../../analyzers/src/ids/mod.rs"),
];

/// One field of a struct: its name and its own doc comment (empty when a
/// comment above covers it together with earlier fields).
struct FieldDoc {
    name: String,
    doc: Vec<String>,
}

/// The doc comment and fields of `pub struct NAME` in [`SOURCES`].
fn struct_doc(name: &str) -> (Vec<String>, Vec<FieldDoc>) {
    let head = format!("pub struct {name} {{");
    let Some(src) = SOURCES.iter().find(|s| s.lines().any(|l| l == head)) else {
        panic!("pub struct {name} not found in the config sources");
    };
    let lines: Vec<&str> = src.lines().collect();
    let at = lines.iter().position(|l| *l == head).unwrap_or(0);
    let mut doc = Vec::new();
    for l in lines[..at].iter().rev() {
        let t = l.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(clean(d));
        } else if !t.starts_with("#[") {
            break;
        }
    }
    doc.reverse();
    let mut fields = Vec::new();
    let mut pending = Vec::new();
    let mut skip = false;
    for l in &lines[at + 1..] {
        if l.starts_with('}') {
            break;
        }
        let t = l.trim();
        if let Some(d) = t.strip_prefix("///") {
            pending.push(clean(d));
        } else if t == "#[serde(skip)]" {
            skip = true;
        } else if let Some(rest) = t.strip_prefix("pub ") {
            let name = rest
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            if !skip {
                fields.push(FieldDoc {
                    name,
                    doc: std::mem::take(&mut pending),
                });
            }
            pending.clear();
            skip = false;
        }
    }
    (doc, fields)
}

/// A doc line as a TOML comment's text: rustdoc links become plain code.
fn clean(d: &str) -> String {
    d.strip_prefix(' ')
        .unwrap_or(d)
        .replace("[`", "`")
        .replace("`]", "`")
}

/// The sections of [`NodeConfig`]: (key, struct name, is an array).
fn sections() -> Vec<(String, String, bool)> {
    let (_, fields) = struct_doc("NodeConfig");
    let src = SOURCES[0];
    fields
        .iter()
        .map(|f| {
            let decl = src
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("pub {}: ", f.name)))
                .unwrap_or_default();
            let ty = decl.split(": ").nth(1).unwrap_or_default();
            let ty = ty.trim_end_matches(',');
            match ty.strip_prefix("Vec<") {
                Some(inner) => (f.name.clone(), inner.trim_end_matches('>').into(), true),
                None => (f.name.clone(), ty.to_string(), false),
            }
        })
        .collect()
}

/// The reference document.
pub fn reference() -> String {
    let defaults = toml::Table::try_from(NodeConfig::default()).expect("defaults serialize");
    let mut out = String::from(
        "# moni-node configuration reference: every key, with its default and\n\
         # what it does. Every key is optional: an empty file is these defaults.\n\
         #\n\
         # GENERATED from the types in moni-node/src/config/ (doc comments and\n\
         # Default values); do not edit. After changing a key, regenerate with\n\
         #   MONI_BLESS=1 cargo test --workspace --lib -- reference_toml\n",
    );
    for (key, ty, array) in sections() {
        let (doc, fields) = struct_doc(&ty);
        let values: toml::Table = if array {
            // An array of tables: one entry of defaults, commented out.
            toml::Table::try_from(SourceSection::default()).expect("source defaults")
        } else {
            match defaults.get(&key) {
                Some(toml::Value::Table(t)) => t.clone(),
                _ => panic!("section {key} has no defaults table"),
            }
        };
        let c = if array { "# " } else { "" };
        out.push('\n');
        for d in &doc {
            out.push_str(format!("# {d}").trim_end());
            out.push('\n');
        }
        if array {
            out.push_str(&format!("# [[{key}]]\n"));
        } else {
            out.push_str(&format!("[{key}]\n"));
        }
        for f in &fields {
            for d in &f.doc {
                out.push_str(format!("# {d}").trim_end());
                out.push('\n');
            }
            match values.get(&f.name) {
                Some(v) => out.push_str(&format!("{c}{} = {v}\n", f.name)),
                None => out.push_str(&format!("# {} = (not set)\n", f.name)),
            }
        }
    }
    out
}

fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/config/reference.toml")
}

/// Lines of `old` and `new` that differ, as `-`/`+` pairs with line numbers.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y && shown < 40 {
            shown += 1;
            if let Some(x) = x {
                out.push_str(&format!("{:4} - {x}\n", i + 1));
            }
            if let Some(y) = y {
                out.push_str(&format!("{:4} + {y}\n", i + 1));
            }
        }
    }
    out
}

#[test]
fn reference_toml_is_in_sync_with_the_config_types() {
    let text = reference();
    let path = path();
    if std::env::var_os("MONI_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write reference.toml");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} is stale (- on disk, + generated); regenerate it with\n  \
         MONI_BLESS=1 cargo test --workspace --lib -- reference_toml\n{}",
        path.display(),
        diff(&on_disk, &text)
    );
}

/// Every key of every section has a doc comment, its own or its group's
/// (a comment above covering several keys).
#[test]
fn reference_toml_documents_every_key() {
    for (key, ty, _) in sections() {
        let (doc, fields) = struct_doc(&ty);
        assert!(!doc.is_empty(), "[{key}] ({ty}) has no doc comment");
        let first = fields.first().expect("fields");
        assert!(
            !first.doc.is_empty(),
            "{key}.{} has no doc comment",
            first.name
        );
    }
    // Every key the defaults serialize is in the reference.
    let defaults = toml::Table::try_from(NodeConfig::default()).expect("defaults");
    let text = reference();
    for (section, v) in &defaults {
        let Some(t) = v.as_table() else { continue };
        for k in t.keys() {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{k} = "))),
                "{section}.{k} missing"
            );
        }
    }
}

/// The reference is a valid config: it parses to exactly the defaults and
/// resolves.
#[test]
fn reference_toml_parses_to_the_defaults() {
    let parsed = NodeConfig::parse(&reference()).expect("reference parses");
    let a = toml::Table::try_from(&parsed).expect("parsed");
    let b = toml::Table::try_from(NodeConfig::default()).expect("defaults");
    assert_eq!(a, b);
    parsed.resolve(None).expect("reference resolves");
}
