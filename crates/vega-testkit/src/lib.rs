//! Test harnesses for the real servers Vega talks to: each starts a
//! throwaway server on a free loopback port in a temporary directory and
//! stops it when dropped (PostgreSQL also as a primary with a streaming
//! replica, `replication.rs`). For tests only.

pub mod consul;
pub mod etcd;
pub mod haproxy;
mod http;
pub mod influxdb;
mod logs;
pub mod mosquitto;
pub mod ports;
pub mod postgres;
pub mod proxy;
pub mod replication;
pub mod s3;
pub mod tls;
pub mod trino;
