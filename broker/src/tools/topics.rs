//! SKELETON: `gregor topics`, filled in by the CLI tools work.

/// Command-line arguments, Kafka's flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Broker(s) to bootstrap from, host:port[,host:port].
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: String,
}

/// Runs the tool.
pub async fn run(args: Args) -> Result<(), super::ToolError> {
    let _ = args;
    Err(super::ToolError::Usage("not implemented yet".into()))
}
