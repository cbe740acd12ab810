//! Generated protobuf types shared by livecdn nodes (cluster records, control API); no logic here.

/// Modules nested like the proto packages, as the generated code expects.
pub mod livecdn {
    pub mod cluster {
        pub mod v1 {
            tonic::include_proto!("livecdn.cluster.v1");
        }
    }
    pub mod control {
        pub mod v1 {
            tonic::include_proto!("livecdn.control.v1");
        }
    }
}

/// Records stored in etcd.
pub use livecdn::cluster::v1 as cluster;
/// The gRPC control API.
pub use livecdn::control::v1 as control;

/// Encoded `FileDescriptorSet` of every livecdn proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("livecdn_descriptor");
