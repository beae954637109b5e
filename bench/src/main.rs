use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = incidentd_bench::cli::Cli::parse();
    incidentd_bench::cli::main_with(cli).await?;
    Ok(())
}
