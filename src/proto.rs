//! The gRPC API's wire types, generated from `proto/` at build time. Its
//! own module: the CLI and the client use it without the server.

pub mod registry;

/// Generated types of `proto/mandate/v1`.
pub mod v1 {
    #![allow(missing_docs, reason = "generated from proto/; documented there")]
    tonic::include_proto!("mandate.v1");

    /// Encoded descriptors of `proto/`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("mandate_descriptor");
}
