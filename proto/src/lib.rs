//! Generated protobuf types shared by livecdn nodes (cluster records, control API); no logic here.

/// Records stored in etcd.
pub mod cluster {
    tonic::include_proto!("livecdn.cluster.v1");
}
