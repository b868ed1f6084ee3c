//! `rawsend send`: not yet implemented (issue 4 fills this module).

use clap::Args;

/// Arguments of `rawsend send`.
#[derive(Args)]
pub struct SendArgs {}

/// Runs `rawsend send`.
pub fn run(_args: &SendArgs) -> anyhow::Result<()> {
    anyhow::bail!("send is not implemented yet")
}
