//! livecdn's shared library: sans-IO protocols (rtmp, flv), the media hub, the tokio shells
//! around them (net), configuration and telemetry. Binaries wire these together.

pub mod cluster;
pub mod config;
pub mod control;
pub mod flv;
pub mod media;
pub mod net;
pub mod node;
pub mod rtmp;
pub mod shutdown;
pub mod telemetry;
