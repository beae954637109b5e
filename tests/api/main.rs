//! Integration tests: a real server on port 0 over real HTTP, each test with its own database
//! (SQLite by default; PostgreSQL when TEST_DATABASE_URL is set), built by the real migrations.

// Helpers serve many test files; not every one uses every helper.
#[allow(dead_code)]
mod helpers;

mod architecture;
mod auth;
mod batching;
mod clients;
mod concurrency;
mod corpus;
mod desk;
mod drills;
mod edges;
mod fuzz;
mod graphiql;
mod hardening;
mod http;
mod limits;
mod list_page;
mod live;
mod migrations;
mod ops;
mod pagination;
mod people;
mod persisted;
mod pings;
mod replicas;
mod responses;
mod rest;
mod roles;
mod schema;
mod signin;
mod sse;
mod statistics;
mod subscriptions;
mod tenancy;
mod tenancy_matrix;
mod tenancy_props;
mod tokens;
mod validation;
mod webhooks;
mod workflow;
mod ws_client;
mod ws_hygiene;
