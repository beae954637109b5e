//! `schema.graphql` is generated from the code; this fails when the two drift apart.

#[test]
fn schema_graphql_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let current = incidentd::graphql::sdl();
    if committed != current {
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &current).unwrap();
            return;
        }
        panic!(
            "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` (or UPDATE_SCHEMA=1 cargo test)"
        );
    }
}
