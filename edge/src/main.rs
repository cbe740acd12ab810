//! `edge` binary: parse the configuration, start logging, run.

use edge::EdgeConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: EdgeConfig = common::config::load();
    common::telemetry::init_logging(&config.common.node.log);
    let shutdown = common::shutdown::on_signal();
    edge::run(config, shutdown).await?;
    Ok(())
}
