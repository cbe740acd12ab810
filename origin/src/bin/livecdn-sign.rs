//! `livecdn-sign`: prints the query string that signs a publish or play URL of `app/name`
//! (append it after `?`). The signing itself is `common::admission`'s, the one the nodes
//! check against; this binary only reads flags and the clock.

use clap::{Parser, ValueEnum};
use common::admission::{sign_cluster, sign_hmac, sign_tencent};
use common::config::parse_duration;

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Form {
    /// `expires=<unix>&sign=<hex HMAC-SHA256(KEY, "{app}/{name}:{expires}")>`.
    Hmac,
    /// `txSecret=<hex MD5(KEY + name + txTime)>&txTime=<hex expiry>` (Tencent-compatible).
    Tencent,
    /// The credential edges pull with (KEY is the cluster secret).
    Cluster,
}

/// Signs a livecdn publish or play URL.
#[derive(Parser, Debug)]
#[command(name = "livecdn-sign", version)]
struct Args {
    /// A key of the app (a `--publish-key` or `--play-key` value's KEY), or the cluster secret.
    #[arg(long, env = "LIVECDN_SIGN_KEY", hide_env_values = true)]
    key: String,
    /// The app (first path element of the URL).
    #[arg(long)]
    app: String,
    /// The stream name, without the app or any query.
    #[arg(long)]
    name: String,
    /// How long from now the token is valid (`90s`, `30m`, `1h`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    expires_in: std::time::Duration,
    /// Expiry as Unix seconds, instead of a duration from now.
    #[arg(long, conflicts_with = "expires_in")]
    expires_at: Option<u64>,
    #[arg(long, value_enum, default_value = "hmac")]
    form: Form,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.key.is_empty() {
        anyhow::bail!("--key is empty");
    }
    let expires = match args.expires_at {
        Some(t) => t,
        None => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            now.as_secs() + args.expires_in.as_secs()
        }
    };
    let query = match args.form {
        Form::Hmac => sign_hmac(&args.key, &args.app, &args.name, expires),
        Form::Tencent => sign_tencent(&args.key, &args.name, expires),
        Form::Cluster => sign_cluster(&args.key, &args.app, &args.name, expires),
    };
    println!("{query}");
    Ok(())
}
