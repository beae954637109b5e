//! incidentd-bench: seeds a data set, drives the server's pages, writes and live fan-out for a
//! fixed time on a fixed number of connections, and runs each page's own SQL as its floor.

pub mod cli;
pub mod client;
pub mod db;
pub mod drive;
pub mod report;
pub mod scenario;
pub mod seed;
pub mod stats;
pub mod world;
