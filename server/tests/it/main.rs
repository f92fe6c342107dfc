//! The toy server's integration tests, one binary: the server in this process on port 0, called as
//! gRPC clients and bad peers would.

mod echo;
mod hardening;
mod keepalive;
