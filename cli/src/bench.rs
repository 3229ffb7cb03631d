use clap::Subcommand;
#[derive(Subcommand)]
pub enum Bench {}
pub async fn run(b: Bench) -> anyhow::Result<()> { match b {} }
