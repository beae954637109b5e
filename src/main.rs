use clap::Parser;
use incidentd::app::Application;
use incidentd::auth::Authenticator;
use incidentd::config::{Cli, Command};
use incidentd::{db::Db, graphql, telemetry};

// A response is built from many small allocations freed together; glibc's allocator spent a
// third of the list page's time in malloc/free (BENCHMARKS.md), mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Token {
            org,
            user,
            role,
            ttl,
        } => {
            let auth = Authenticator::new(&config.auth())?;
            println!("{}", auth.mint(org, user, role, ttl)?);
            Ok(())
        }
        Command::PersistedManifest { dir } => {
            let manifest = incidentd::graphql::transport::persisted::manifest::generate(&dir)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Command::Migrate => {
            telemetry::init(config.log_format);
            let db = Db::connect(&config.db_options()).await?;
            db.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            telemetry::init(config.log_format);
            let app = Application::build(config).await?;
            let addr = app.local_addr();
            if let Some(token) = &app.state().graphql.dev_token {
                tracing::warn!(
                    "DEV MODE: no JWT configuration, tokens are signed with a publicly known secret. \
                     Never run this way in production."
                );
                println!("\nDesk:      http://{addr}/desk/incidents");
                println!("GraphiQL:  http://{addr}/graphql");
                println!(
                    "Dev token (admin of the demo organization, valid 30 days):\n\n  Bearer {token}\n"
                );
            }
            tracing::info!(%addr, "incidentd listening");
            app.run_until(shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
