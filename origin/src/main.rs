//! `origin` binary: parse the configuration, start logging, run.

use origin::OriginConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: OriginConfig = common::config::load();
    common::telemetry::init_logging(&config.common.node.log);
    let shutdown = common::shutdown::on_signal();
    origin::run(config, shutdown).await?;
    Ok(())
}
