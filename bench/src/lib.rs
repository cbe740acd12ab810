//! livecdn load generator: a publisher of a synthetic H.264+AAC stream whose video frames
//! carry their send instant, and many RTMP / HTTP-FLV / HLS players in one process that measure
//! latency, time to first frame, bitrate, gaps and errors, plus the CPU and memory of the
//! servers under test. `bench/run.sh` drives the scenarios; `bench-report` writes
//! BENCHMARKS.md from their JSON.

pub mod flv_scan;
pub mod hist;
pub mod hls_player;
pub mod http1;
pub mod m3u8;
pub mod mp4_scan;
pub mod player;
pub mod procstat;
pub mod publisher;
pub mod report;
pub mod rtmp_scan;
pub mod run;
pub mod stream;
pub mod target;
pub mod tls;
pub mod ts_scan;
