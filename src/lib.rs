//! incidentd: incident management over GraphQL.

pub mod app;
pub mod auth;
pub mod browser;
pub mod config;
pub mod db;
pub mod desk;
pub mod entity;
pub mod error;
pub mod graphql;
pub mod incident;
pub mod live;
pub mod monitoring;
pub mod rest;
pub mod signin;
pub mod telemetry;
pub mod webhook;
