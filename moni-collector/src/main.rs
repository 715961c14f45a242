//! moni-collector skeleton: lists the datasets it will accept.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "moni-collector",
    version,
    about = "moni's central collector (skeleton: ingest arrives in a later release)"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    Cli::parse();
    for (dataset, version) in moni_collector::accepted_datasets() {
        println!("{dataset}\tschema version {version}");
    }
    Ok(())
}
