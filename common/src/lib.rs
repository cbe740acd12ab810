//! livecdn's shared library: sans-IO protocols (rtmp, flv) and muxers (ts, fmp4, hls), the media hub, the tokio shells
//! around them (net), configuration and telemetry. Binaries wire these together.

pub mod admission;
pub mod cluster;
pub mod config;
pub mod control;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod locate;
pub mod media;
pub mod net;
pub mod node;
pub mod rtmp;
pub mod shutdown;
pub mod telemetry;
pub mod ts;
