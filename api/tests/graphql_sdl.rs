//! The GraphQL schema committed as `api/schema.graphql` must be what the code builds.
//!
//! Refresh it after changing the schema with
//! `BERTH_BLESS=1 cargo test -p berth-api --test graphql_sdl` (as for the JSON Schemas under
//! `schemas/json/`).

use std::path::Path;

#[test]
fn committed_graphql_sdl_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let generated = berth_api::graphql::sdl();
    if std::env::var_os("BERTH_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write api/schema.graphql");
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read: {e}", path.display()));
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "api/schema.graphql is stale (first difference at line {}: committed {:?}, \
             generated {:?});\nrefresh it with: BERTH_BLESS=1 cargo test -p berth-api --test \
             graphql_sdl",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            generated.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}
