//! [`build_schema`]: the schema with its limits (depth, complexity, aliases) and the extension
//! that gives every limit and validation error an `extensions.code`.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextSubscribe, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Response, Schema, ServerError, ServerResult, ValidationResult, Variables};
use futures::stream::{BoxStream, StreamExt};

use super::mutation::Mutation;
use super::query::Query;
use super::subscription::SubscriptionRoot;
use crate::state::AppState;

/// berth's GraphQL schema.
pub type BerthSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// Builds the schema over `state` with the limits of `state.config().graphql`.
///
/// Requests must carry the caller's [`Principal`](crate::auth::Principal) as request (or
/// websocket connection) data; every root field is authorized against it.
pub fn build_schema(state: AppState) -> BerthSchema {
    let cfg = state.config().graphql.clone();
    Schema::build(Query, Mutation, SubscriptionRoot)
        .data(state)
        .limit_depth(cfg.max_depth)
        .limit_complexity(cfg.max_complexity)
        .limit_recursive_depth(cfg.max_depth.saturating_mul(2).max(16))
        .limit_directives(10)
        .extension(Limits { max_aliases: cfg.max_aliases })
        .finish()
}

/// The schema's SDL, as committed in `api/schema.graphql` (a test fails when that file is
/// stale; refresh it with `BERTH_BLESS=1 cargo test -p berth-api --test graphql_sdl`).
pub fn sdl() -> String {
    Schema::build(Query, Mutation, SubscriptionRoot).finish().sdl()
}

/// Counts aliases and codes validation errors.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_aliases: usize,
}

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|s| match &s.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => count_aliases(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Aliases in the whole document (operations and fragments, each fragment counted once).
pub fn aliases_in(doc: &ExecutableDocument) -> usize {
    let ops: usize =
        doc.operations.iter().map(|(_, op)| count_aliases(&op.node.selection_set.node)).sum();
    let frags: usize =
        doc.fragments.values().map(|f| count_aliases(&f.node.selection_set.node)).sum();
    ops + frags
}

/// The code for an error the validator produced.
fn validation_code(message: &str) -> &'static str {
    if message.contains("nested too deep") || message.contains("recursive depth") {
        "depth_limit"
    } else if message.contains("too complex") {
        "complexity_limit"
    } else if message.contains("directives") {
        "directive_limit"
    } else {
        "validation_failed"
    }
}

fn with_code(mut e: ServerError, code: &str) -> ServerError {
    let ext = e.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
    e
}

fn coded_response(mut r: Response) -> Response {
    r.errors = r
        .errors
        .into_iter()
        .map(|e| {
            let code = validation_code(&e.message);
            with_code(e, code)
        })
        .collect();
    r
}

#[async_trait::async_trait]
impl Extension for Limits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await.map_err(|e| with_code(e, "parse_error"))?;
        let n = aliases_in(&doc);
        if n > self.max_aliases {
            return Err(with_code(
                ServerError::new(
                    format!(
                        "the document has {n} aliases; at most {} are allowed",
                        self.max_aliases
                    ),
                    None,
                ),
                "alias_limit",
            ));
        }
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = validation_code(&e.message);
                    with_code(e, code)
                })
                .collect()
        })
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(coded_response).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::graphql::policy::{FIELD_POLICY, Root, field_action};

    fn schema() -> BerthSchema {
        Schema::build(Query, Mutation, SubscriptionRoot).finish()
    }

    /// The root fields as the schema itself reports them (introspection).
    async fn root_fields(schema: &BerthSchema, root: Root) -> Vec<String> {
        let field = match root {
            Root::Query => "queryType",
            Root::Mutation => "mutationType",
            Root::Subscription => "subscriptionType",
        };
        let q = format!("{{ __schema {{ {field} {{ fields {{ name }} }} }} }}");
        let r = schema.execute(q).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let v = r.data.into_json().expect("JSON");
        v["__schema"][field]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn every_root_field_of_the_schema_has_a_policy_entry() {
        let schema = schema();
        let mut seen = BTreeSet::new();
        for root in [Root::Query, Root::Mutation, Root::Subscription] {
            let fields = root_fields(&schema, root).await;
            assert!(!fields.is_empty(), "no fields found for {}", root.type_name());
            for f in fields {
                assert!(
                    field_action(root, &f).is_some(),
                    "{}.{f} has no entry in FIELD_POLICY",
                    root.type_name()
                );
                seen.insert((root.type_name(), f));
            }
        }
        for (root, f, _) in FIELD_POLICY {
            assert!(
                seen.contains(&(root.type_name(), (*f).to_owned())),
                "FIELD_POLICY names {}.{f}, which the schema does not have",
                root.type_name()
            );
        }
    }

    #[test]
    fn a_viewer_may_neither_mutate_nor_exec() {
        for (root, f, action) in FIELD_POLICY {
            let allowed = crate::policy::authorize(crate::policy::Role::Viewer, *action).is_ok();
            // A viewer manages their own account: API tokens and password.
            let own_account = matches!(
                *action,
                crate::policy::Action::ManageOwnTokens | crate::policy::Action::ReadSelf
            );
            if (*root == Root::Mutation && !own_account) || f.starts_with("exec") {
                assert!(!allowed, "a viewer may call {}.{f}", root.type_name());
            }
        }
    }

    #[test]
    fn aliases_are_counted_in_operations_and_fragments() {
        let doc = async_graphql::parser::parse_query(
            "query { a: me b: me ...F } fragment F on Query { c: me d: me e: me }",
        )
        .expect("parse");
        assert_eq!(aliases_in(&doc), 5);
    }
}
