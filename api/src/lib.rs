//! berth's HTTP face: REST under `/api/v1` and GraphQL at `/graphql`, with authentication and one
//! authorization policy for both. Built on top of `berth-controller`'s store.
